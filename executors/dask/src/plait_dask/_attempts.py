"""Step attempts in flight on Dask, and how a finished Dask future becomes a StepOutcome.

Each run has a ``RunAttempts``: its live-event topic, its attempts by Dask key, and one
queue on which everything the coordinator waits for arrives, from whichever thread:

- ``("outcome", (key, pickled))``: the outcome a worker pushed on the run's topic;
- ``("done", handle)``: Dask reports the attempt's future finished, erred or canceled;
- ``("live", StepEvent)``: a step start or log line, while the step runs;
- ``("unsent", (handle, exc))``: ``client.submit`` itself failed.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cloudpickle
from plait.executors.base import StepHandle, StepOutcome

from plait_dask._exits import WorkerExits

if TYPE_CHECKING:
    from distributed import Future

RESULT_TIMEOUT_SECONDS = 60.0


def task_key(run_id: str, step_key: str, attempt: int) -> str:
    """The Dask key of one step attempt (unique per run, step and attempt)."""
    return f"plait-{run_id}-{step_key}-{attempt}"


@dataclass(eq=False)
class RunAttempts:
    run_id: str
    topic: str
    queue: queue.Queue = field(default_factory=queue.Queue)
    handles: dict[str, DaskStepHandle] = field(default_factory=dict)
    """Attempts not yet resolved, by Dask key."""
    job_data: Future | None = None
    """A large job pickle, scattered to every worker once for the run's tasks."""


@dataclass(eq=False)
class DaskStepHandle(StepHandle):
    key: str = ""
    run: RunAttempts | None = None
    future: Future | None = None
    """Set on the client's event loop once the task was submitted."""
    worker: str | None = None
    """Address of the worker that started the attempt (from its live STEP_START)."""
    resolved: bool = False
    """The outcome was taken (or the attempt canceled): later news of it is ignored."""


def outcome_of_future(handle: DaskStepHandle, future: Future,
                      exits: WorkerExits | None = None) -> StepOutcome | None:
    """The outcome of a future Dask reports done; None if it was canceled (by plait, or
    because the client lost its scheduler: the caller checks the client then). ``exits``
    tells how a dead worker's process exited."""
    from distributed.scheduler import KilledWorker

    task = handle.task
    status = future.status
    if status == "finished":
        try:
            return cloudpickle.loads(future.result(timeout=RESULT_TIMEOUT_SECONDS))
        except Exception as exc:  # noqa: BLE001 - the worker holding it went away
            return StepOutcome.failed(
                task, "lost",
                f"step {task.step_key!r} finished on a Dask worker, but its outcome could not "
                f"be fetched ({type(exc).__name__}: {exc}); the worker probably died",
            )
    if status == "cancelled":
        return None
    if status == "error":
        exc: Any = future.exception(timeout=RESULT_TIMEOUT_SECONDS)
        if isinstance(exc, KilledWorker):
            return StepOutcome.failed(task, "lost", (exits or WorkerExits()).lost_message(
                task, exc.last_worker, handle.worker))
        return unsent_outcome(handle, exc)
    return StepOutcome.failed(
        task, "lost", f"Dask lost the task of step {task.step_key!r} (future {status})"
    )


def unsent_outcome(handle: StepHandle, exc: BaseException) -> StepOutcome:
    """The attempt could not run at all on Dask (submit failed, or the worker could not
    run the task function): a ``crash``, with what the workers need."""
    return StepOutcome.failed(
        handle.task, "crash",
        f"Dask could not run step {handle.task.step_key!r}: {type(exc).__name__}: {exc}. "
        "Workers need plait and plait-dask installed (and the job's code, unless "
        "execution.dask.ship_code is true)",
    )
