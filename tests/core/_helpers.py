"""Small helpers shared by the core tests (no fixtures: each test builds what it needs)."""

from __future__ import annotations

from typing import Any

from plait import EventType, Instance, JobDefinition, RunResult


def run(job: JobDefinition, **kwargs: Any) -> RunResult:
    """Execute in-process on an ephemeral instance (unless told otherwise)."""
    kwargs.setdefault("instance", Instance.ephemeral())
    return job.execute(**kwargs)


def types_of(events: Any, step_key: str | None = None) -> list[EventType]:
    return [e.event_type for e in events if step_key is None or e.step_key == step_key]


def of_type(result: RunResult, event_type: EventType, step_key: str | None = None) -> list[Any]:
    return [
        e
        for e in result.events
        if e.event_type is event_type and (step_key is None or e.step_key == step_key)
    ]


def started(result: RunResult) -> list[str]:
    """Step keys in the order their (first) STEP_START was recorded."""
    keys = [e.step_key for e in result.events if e.event_type is EventType.STEP_START]
    return list(dict.fromkeys(keys))
