"""What runs on a Dask worker: one step attempt through ``plait.execute_step``.

Live events (step start, log lines) are published with ``Worker.log_event`` on the run's
topic while the step runs, tagged with the worker's address so the coordinator knows where
each attempt started. The pickled outcome is the task's result, and is also pushed on the
topic right before the task returns: it reaches the coordinator together with Dask's
"finished" notice, which saves the round trip of fetching the result. Workers need
``plait`` and ``plait-dask`` installed (this module is pickled by reference).
"""

from __future__ import annotations

from typing import Any

import cloudpickle
from plait._run.step import WorkerState, execute_step, portable
from plait.executors.base import StepTask
from plait.executors.wire import event_to_json

_state = WorkerState(max_runs=32)
"""Jobs and per-run resources of this worker process; runs are closed by ``close_run``."""

MAX_PUSHED_OUTCOME_BYTES = 1 << 20
"""Larger outcomes are fetched as the task's result instead (the scheduler keeps a run's
topic messages until the run ends)."""


class _ReleasedByScheduler:
    """Quacks like the ``threading.Event`` that ``execute_step`` checks before storing an
    output: set once Dask released the task (plait canceled the attempt or it timed out).
    A running thread cannot be stopped, but it must store nothing more."""

    def __init__(self, worker: Any, key: str) -> None:
        self._worker = worker
        self._key = key

    def is_set(self) -> bool:
        ts = self._worker.state.tasks.get(self._key)
        return ts is None or ts.state in ("cancelled", "released", "forgotten")


def run_step_on_worker(task: StepTask, topic: str, key: str, job_bytes: bytes | None = None) -> bytes:
    """The Dask task of one step attempt; its result is the pickled ``StepOutcome``.
    ``job_bytes`` is the job's pickle when the executor scattered it once for the run
    instead of sending it with every task.

    The result is bytes, not the outcome object: Dask measures every result it keeps
    (``sizeof`` walks nested events and dicts, ~0.2 ms a step) and the bytes exist anyway
    for the push."""
    from dataclasses import replace

    from distributed import get_worker

    worker = get_worker()
    address = worker.address
    if job_bytes is not None:
        task = replace(task, job=replace(task.job, pickled=job_bytes))

    def emit(event: Any) -> None:
        worker.log_event(topic, {"worker": address, "event": event_to_json(event)})

    outcome = portable(execute_step(task, emit, _state, _ReleasedByScheduler(worker, key)))  # type: ignore[arg-type]
    pickled = cloudpickle.dumps(outcome)
    if len(pickled) <= MAX_PUSHED_OUTCOME_BYTES:
        worker.log_event(topic, {"key": key, "outcome": pickled})
    return pickled


def close_run(run_id: str) -> list[str]:
    """Tear down the resources this worker process set up for ``run_id``."""
    return _state.close_run(run_id)
