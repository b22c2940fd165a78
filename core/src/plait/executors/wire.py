"""JSON forms of ``StepTask`` and ``StepOutcome``, for engines whose messages must not
carry pickles (Celery: a worker never unpickles what came through the broker).

A task crosses as its code pointer, config and input handles; an outcome as its events,
output records and failure (without the exception object). Values that JSON cannot hold
(user metadata of odd types) are sent as their ``repr``; dataclasses as their fields.

``*_to_json`` return JSON-safe data (for engines that encode messages themselves);
``*_to_text`` return the JSON text in one encoding pass (no copy of the step's data, no
decode): a Celery worker sends an outcome and its events once per step, so that matters.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields, is_dataclass
from typing import Any

from plait.errors import ExecutorError
from plait.events import EventType, StepEvent
from plait.executors.base import (
    InputHandle,
    InputSpec,
    JobRef,
    OutputRecord,
    StepFailure,
    StepOutcome,
    StepTask,
)


def _encode_other(value: Any) -> Any:
    """What ``json.dumps`` cannot encode: a dataclass as its fields, anything else as text."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return repr(value)


def _text(value: Any) -> str:
    return json.dumps(value, default=_encode_other)


def _jsonable(value: Any) -> Any:
    return json.loads(_text(value))


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _fields_of(obj: Any) -> dict[str, Any]:
    """A dataclass's fields, not copied: they are only encoded, never changed."""
    names = _FIELD_NAMES.get(type(obj))
    if names is None:
        names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in fields(obj))
    return {name: getattr(obj, name) for name in names}


def task_to_json(task: StepTask) -> dict[str, Any]:
    """The task as JSON-safe data; refuses anything that would need a pickle."""
    if task.job.pointer is None:
        raise ExecutorError(
            f"step {task.step_key!r}: the job has no code pointer, and JSON messages cannot "
            "carry a pickled job; define the job at module level in an importable module"
        )
    if task.resource_overrides is not None:
        raise ExecutorError(
            "resources passed to execute(resources=...) are Python objects and cannot travel "
            "as JSON; set them on the job in its module, and configure them through run "
            "config ('resources: {key: {config: {...}}}')"
        )
    return _jsonable(
        {
            "run_id": task.run_id,
            "step_key": task.step_key,
            "node_key": task.node_key,
            "attempt": task.attempt,
            "job_pointer": task.job.pointer,
            "mapping_key": task.mapping_key,
            "op_config": task.op_config,
            "resource_config": task.resource_config,
            "inputs": {
                name: {"is_list": spec.is_list, "handles": [_fields_of(h) for h in spec.handles]}
                for name, spec in task.inputs.items()
            },
            "default_io": task.default_io,
            "timeout": task.timeout,
            "tags": task.tags,
        }
    )


def task_from_json(data: dict[str, Any]) -> StepTask:
    inputs = {
        name: InputSpec(tuple(InputHandle(**h) for h in spec["handles"]), spec["is_list"])
        for name, spec in data["inputs"].items()
    }
    return StepTask(
        run_id=data["run_id"],
        step_key=data["step_key"],
        node_key=data["node_key"],
        attempt=data["attempt"],
        job=JobRef(pointer=data["job_pointer"]),
        mapping_key=data.get("mapping_key"),
        op_config=data.get("op_config"),
        resource_config=data.get("resource_config") or {},
        inputs=inputs,
        default_io=data.get("default_io"),
        timeout=data.get("timeout"),
        tags=data.get("tags") or {},
    )


def _event_fields(event: StepEvent) -> dict[str, Any]:
    data = _fields_of(event)
    data["event_type"] = event.event_type.value
    return data


def event_to_json(event: StepEvent) -> dict[str, Any]:
    return _jsonable(_event_fields(event))


def event_to_text(event: StepEvent) -> str:
    """``event_to_json`` as JSON text."""
    return _text(_event_fields(event))


def event_from_json(data: dict[str, Any]) -> StepEvent:
    return StepEvent(**{**data, "event_type": EventType(data["event_type"])})


def _outcome_fields(outcome: StepOutcome) -> dict[str, Any]:
    failure = None
    if outcome.failure is not None:
        failure = _fields_of(outcome.failure)
        failure.pop("exception", None)
        failure["retry_requested"] = list(outcome.failure.retry_requested or []) or None
    return {
        "run_id": outcome.run_id,
        "step_key": outcome.step_key,
        "attempt": outcome.attempt,
        "events": [_event_fields(e) for e in outcome.events],
        "outputs": [_fields_of(o) for o in outcome.outputs],
        "failure": failure,
    }


def outcome_to_json(outcome: StepOutcome) -> dict[str, Any]:
    return _jsonable(_outcome_fields(outcome))


def outcome_to_text(outcome: StepOutcome) -> str:
    """``outcome_to_json`` as JSON text."""
    return _text(_outcome_fields(outcome))


def outcome_from_json(data: dict[str, Any]) -> StepOutcome:
    failure = None
    if data.get("failure"):
        raw = dict(data["failure"])
        if raw.get("retry_requested"):
            raw["retry_requested"] = tuple(raw["retry_requested"])
        failure = StepFailure(**raw)
    return StepOutcome(
        run_id=data["run_id"],
        step_key=data["step_key"],
        attempt=data["attempt"],
        events=[event_from_json(e) for e in data["events"]],
        outputs=[OutputRecord(**o) for o in data["outputs"]],
        failure=failure,
    )
