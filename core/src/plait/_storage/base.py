"""Run storage: the record of every run and its ordered event log.

Only a run's coordinator writes its events, in batches (``append_events``), so a storage
needs no cross-writer sequencing per run; several coordinators (processes) may write
different runs to the same storage at once.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from plait.events import Event, EventType


class RunStatus(enum.StrEnum):
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELED = "CANCELED"

    def __str__(self) -> str:
        return self.value


@dataclass
class RunRecord:
    """One run: what ran, with which config, and how it ended."""

    run_id: str
    job_name: str
    status: RunStatus = RunStatus.STARTED
    run_config: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    parent_run_id: str | None = None
    start_time: float | None = None
    end_time: float | None = None
    job_pointer: str | None = None
    """``module:attr`` or ``path/file.py:attr`` to load the job again (re-execution)."""
    job_pickle: bytes | None = None
    """The cloudpickled job, when it pickles: re-execution of jobs with no code pointer."""


class RunStorage(ABC):
    """Where runs and events are kept. ``Instance`` owns one."""

    @abstractmethod
    def create_run(self, record: RunRecord) -> None: ...

    @abstractmethod
    def update_run(
        self, run_id: str, *, status: RunStatus, end_time: float | None = None
    ) -> None: ...

    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord | None: ...

    @abstractmethod
    def list_runs(
        self,
        *,
        job_name: str | None = None,
        status: RunStatus | None = None,
        tags: dict[str, str] | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """Newest first."""

    @abstractmethod
    def append_events(self, events: Sequence[Event]) -> None:
        """Store a batch of events (one transaction)."""

    @abstractmethod
    def get_events(
        self,
        run_id: str,
        *,
        step_key: str | None = None,
        event_types: Iterable[EventType] | None = None,
        min_level: int | None = None,
        after_seq: int = 0,
    ) -> list[Event]:
        """A run's events in sequence order, filtered."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release connections."""


class InMemoryRunStorage(RunStorage):
    """Runs and events in this process's memory: ``Instance.ephemeral()``."""

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._events: dict[str, list[Event]] = {}

    def create_run(self, record: RunRecord) -> None:
        self._runs[record.run_id] = record
        self._events.setdefault(record.run_id, [])

    def update_run(self, run_id: str, *, status: RunStatus, end_time: float | None = None) -> None:
        run = self._runs[run_id]
        run.status = status
        run.end_time = end_time

    def get_run(self, run_id: str) -> RunRecord | None:
        return self._runs.get(run_id)

    def list_runs(self, *, job_name=None, status=None, tags=None, limit=None) -> list[RunRecord]:
        runs = [
            r
            for r in reversed(self._runs.values())
            if (job_name is None or r.job_name == job_name)
            and (status is None or r.status == status)
            and all(r.tags.get(k) == v for k, v in (tags or {}).items())
        ]
        return runs[:limit] if limit else runs

    def append_events(self, events: Sequence[Event]) -> None:
        for event in events:
            self._events.setdefault(event.run_id, []).append(event)

    def get_events(
        self, run_id, *, step_key=None, event_types=None, min_level=None, after_seq=0
    ) -> list[Event]:
        types = set(event_types) if event_types is not None else None
        return [
            e
            for e in self._events.get(run_id, [])
            if e.seq > after_seq
            and (step_key is None or e.step_key == step_key)
            and (types is None or e.event_type in types)
            and (min_level is None or e.level >= min_level)
        ]
