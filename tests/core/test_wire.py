"""JSON forms of step tasks, events and outcomes (``plait.executors.wire``): what Celery
workers send instead of pickles. ``*_to_text`` is the one-pass encoding a worker sends;
it must say exactly what ``*_to_json`` says."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from plait import EventType
from plait.errors import ExecutorError
from plait.events import StepEvent
from plait.executors.base import (
    InputHandle,
    InputSpec,
    JobRef,
    OutputRecord,
    StepFailure,
    StepOutcome,
    StepTask,
)
from plait.executors.wire import (
    event_from_json,
    event_to_json,
    event_to_text,
    outcome_from_json,
    outcome_to_json,
    outcome_to_text,
    task_from_json,
    task_to_json,
)


@dataclass
class Point:
    x: int
    y: int


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def _event(index: int, data: dict | None = None) -> StepEvent:
    return StepEvent(EventType.LOG, "step", 1, index, 1700000000.5, "hello", 20,
                     data or {}, "run-1")


def _outcome(failure: StepFailure | None = None) -> StepOutcome:
    outputs = [OutputRecord("result", "k1", "/data/run-1/step/result", 12, "io_manager",
                            {"rows": 3, "where": Point(1, 2)})]
    return StepOutcome("run-1", "step", 1, [_event(0), _event(1, {"odd": Opaque()})],
                       outputs, failure)


def test_an_outcome_survives_the_trip():
    failure = StepFailure("error", "boom", "ValueError", "Traceback ...", False,
                          retry_requested=(3, 0.5), metadata={"a": 1},
                          exception=ValueError("boom"))
    back = outcome_from_json(json.loads(outcome_to_text(_outcome(failure))))
    assert back.failure is not None
    assert back.failure.retry_requested == (3, 0.5)
    assert back.failure.exception is None  # the exception object never travels
    assert (back.failure.kind, back.failure.message, back.failure.allow_retries) == (
        "error", "boom", False)
    assert back.outputs == [OutputRecord("result", "k1", "/data/run-1/step/result", 12,
                                         "io_manager", {"rows": 3, "where": {"x": 1, "y": 2}})]
    assert [e.event_type for e in back.events] == [EventType.LOG, EventType.LOG]
    assert back.events[0] == _event(0)


def test_values_json_cannot_hold_travel_as_fields_or_text():
    data = outcome_to_json(_outcome())
    assert data["outputs"][0]["metadata"]["where"] == {"x": 1, "y": 2}
    assert data["events"][1]["data"] == {"odd": "<opaque>"}


@pytest.mark.parametrize("failure", [None, StepFailure("crash", "died", retry_requested=None)])
def test_the_text_form_says_what_the_json_form_says(failure):
    outcome = _outcome(failure)
    assert json.loads(outcome_to_text(outcome)) == outcome_to_json(outcome)
    event = _event(3, {"nested": {"p": Point(3, 4)}, "tuple": (1, 2)})
    assert json.loads(event_to_text(event)) == event_to_json(event)
    assert event_from_json(event_to_json(event)).data == {"nested": {"p": {"x": 3, "y": 4}},
                                                          "tuple": [1, 2]}


def test_encoding_leaves_the_event_alone():
    data = {"rows": [1, 2]}
    event = _event(0, data)
    encoded = event_to_json(event)
    encoded["data"]["rows"].append(3)
    assert data == {"rows": [1, 2]}


def test_a_task_survives_the_trip_and_one_without_a_pointer_is_refused():
    handle = InputHandle("run-1", "up", "result", None, "/data/run-1/up/result", "io_manager",
                         {"size": 4})
    task = StepTask(run_id="run-1", step_key="step", node_key="step", attempt=2,
                    job=JobRef(pointer="pkg.jobs:my_job"), op_config={"n": 1},
                    inputs={"x": InputSpec((handle,), False)}, timeout=5.0, tags={"t": "v"})
    back = task_from_json(json.loads(json.dumps(task_to_json(task))))
    assert back.inputs == task.inputs
    assert (back.job.pointer, back.attempt, back.op_config, back.timeout, back.tags) == (
        "pkg.jobs:my_job", 2, {"n": 1}, 5.0, {"t": "v"})
    with pytest.raises(ExecutorError, match="no code pointer"):
        task_to_json(StepTask(run_id="r", step_key="s", node_key="s", attempt=0, job=JobRef()))
