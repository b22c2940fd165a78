"""``DaskExecutor``: plait steps as Dask tasks, on an existing cluster or a LocalCluster.

The coordinator's one run loop decides what runs when; this executor only turns a step
attempt into one Dask task and reports its end:

- ``submit`` records the attempt; when the coordinator next calls ``wait``, every attempt
  submitted since goes to Dask in one hop onto the client's event loop:
  ``client.submit(run_step_on_worker, task, key="plait-{run}-{step}-{attempt}",
  priority=<plait/priority tag>, resources=<dask/resources tag>, pure=False, retries=0)``.
  (Calling the client from the coordinator's thread costs a thread switch per call, which
  on a busy machine was a good part of each step's overhead.) Keys are unique per run,
  step and attempt, so concurrent runs of one job never share a task. Outputs go to the
  job's IO managers (shared storage), never through Dask.
- completion: the worker pushes the step's outcome on the run's event topic
  (``Worker.log_event`` -> ``Client.subscribe_topic``) just before the task returns, and
  a watcher on the client's loop reports each future's end; both land on the run's queue, on which
  ``wait`` blocks (see ``_attempts``). Live events (step start, logs) come the same way,
  so they are recorded on the coordinator's thread while the step still runs. A finished
  task whose pushed outcome did not arrive is read as the future's result.
- a future is released as soon as its outcome was taken (with the next batch, i.e. after
  the coordinator submitted what that outcome made ready), so Dask forgets the key and
  never recomputes a step whose outcome plait has recorded.

Worker death: the ``plait_dask._fence`` scheduler plugin makes the first death of a plait
task's worker err the task with ``KilledWorker`` instead of Dask re-running it elsewhere;
that attempt is reported as a ``lost`` failure and the op's RetryPolicy decides. (A
worker *retired* gracefully mid-step is not a death to Dask: it moves the task and plait
takes the outcome of that run.) The executor does not subscribe to Dask's ``"all"`` topic:
some of its events carry scheduler objects that cannot be sent, which breaks the comm of
every client subscribed to it. A scheduler that goes away fails the run with an
``ExecutorError`` naming its address.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from plait.errors import ExecutorError
from plait.events import EventType
from plait.executors.base import Executor, StepHandle, StepOutcome, StepTask
from pydantic import BaseModel

from plait_dask._attempts import (
    DaskStepHandle,
    RunAttempts,
    outcome_of_future,
    task_key,
    unsent_outcome,
)
from plait_dask._exits import WorkerExits
from plait_dask._ship import ShippedJobs
from plait_dask._tags import priority_of, resources_of
from plait_dask.config import DaskConfig

if TYPE_CHECKING:
    from distributed import Client, Future
    from plait import JobDefinition

logger = logging.getLogger(__name__)

QUEUED_PER_THREAD = 32
"""Default ``max_concurrent``: this many attempts per worker thread of the cluster."""
SCATTER_JOB_BYTES = 256 * 1024
"""A job pickle up to this size travels inside each task (a 50-op job is ~5 KB); a larger
one is scattered once per run to every worker and tasks refer to it."""
LIVENESS_SECONDS = 2.0
"""How long ``wait`` blocks on its queue before checking the client is still connected."""
CLOSE_TIMEOUT_SECONDS = 10.0


class DaskExecutor(Executor):
    """Runs each step attempt as one Dask task on the cluster's workers."""

    name: ClassVar[str] = "dask"
    config_model: ClassVar[type[BaseModel]] = DaskConfig
    crosses_processes: ClassVar[bool] = True

    config: DaskConfig

    def __init__(self, config: BaseModel | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._client: Client | None = None
        self._cluster: Any = None
        self._threads = 0
        self._fenced = False
        self._exits = WorkerExits()
        self._shipped = ShippedJobs(self.config.ship_code)
        self._lock = threading.Lock()
        self._runs: dict[str, RunAttempts] = {}
        self._unsent: list[tuple[DaskStepHandle, StepTask, Any]] = []
        self._to_release: list[Future] = []
        self._idle = threading.Event()

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The scheduler this executor talks to (its LocalCluster's, once started)."""
        if self._client is not None:
            return str(self._client.scheduler.address)
        return self.config.address or "a LocalCluster started by plait"

    @property
    def client(self) -> Client:
        """The ``distributed.Client`` of a started executor."""
        if self._client is None:
            raise ExecutorError("the Dask executor is not started; use it in a `with` block")
        return self._client

    @property
    def max_concurrent(self) -> int:
        if self.config.max_concurrent:
            return self.config.max_concurrent
        # Many steps per worker thread: each worker has its next steps queued while it
        # runs one, so it does not idle for a round trip to the coordinator after each
        # short step, and Dask orders what waits by the priority plait gives it
        # (bench/dask.py fan-out on an idle 2-thread cluster: 8 in flight 1.30-1.47x raw,
        # 64 in flight 1.20-1.32x). Op timeouts count from a step's start, not submission.
        return QUEUED_PER_THREAD * self._threads if self._threads else 64

    def start(self) -> None:
        import plait_dask._worker  # noqa: F401 - fail here, not on the client's loop thread
        from plait_dask._cluster import connect, prepare

        self._client, self._cluster = connect(self.config)
        try:
            self._fenced = prepare(self._client)
            self._exits.watch(self._client)
            self._threads = sum(self._client.nthreads().values())
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        with self._lock:
            self._runs.clear()
            self._unsent.clear()
            self._to_release.clear()
        if client is not None:
            try:
                client.close(timeout=CLOSE_TIMEOUT_SECONDS)
            except Exception as exc:  # noqa: BLE001 - closing must not hide the run's result
                logger.warning("closing the Dask client failed: %s", exc)
        if cluster is not None:
            try:
                cluster.close(timeout=CLOSE_TIMEOUT_SECONDS)
            except Exception as exc:  # noqa: BLE001
                logger.warning("closing the LocalCluster failed: %s", exc)

    def check_job(self, job: JobDefinition, task_template: StepTask | None) -> None:
        """Check the ``dask/resources`` tags and prepare the job's pickle with its code
        by value where workers cannot import it (``ship_code``, or a file loaded by path)."""
        problems = []
        for key, node in job.nodes.items():
            try:
                resources_of(node.op.tags)
            except ValueError as exc:
                problems.append(f"op {key!r}: {exc}")
        if problems:
            raise ExecutorError("\n".join(problems))
        self._shipped.prepare(job)

    # ---- submit / wait / cancel -----------------------------------------------------------

    def submit(self, task: StepTask) -> StepHandle:
        client = self._live_client()
        run = self._run(task.run_id)
        task = self._shipped.for_task(task)
        key = task_key(task.run_id, task.step_key, task.attempt)
        handle = DaskStepHandle(task, key=key, run=run)
        sent, job_data = self._job_by_reference(client, run, task)
        with self._lock:
            run.handles[key] = handle
            self._unsent.append((handle, sent, job_data))
        return handle

    def wait(self, handles: Sequence[StepHandle], timeout: float | None) -> list[StepOutcome]:
        self._send()
        ours = [h for h in handles if isinstance(h, DaskStepHandle) and h.run is not None]
        if not ours:
            # Nothing in flight (a retry is waiting out its delay): the caller asked to block.
            if timeout:
                self._idle.wait(timeout)
            return []
        run = ours[0].run
        assert run is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            block = LIVENESS_SECONDS if remaining is None else min(remaining, LIVENESS_SECONDS)
            try:
                items = [run.queue.get(timeout=block)]
            except queue.Empty:
                self._live_client()
                if remaining is not None and remaining <= LIVENESS_SECONDS:
                    return []
                continue
            while True:
                try:
                    items.append(run.queue.get_nowait())
                except queue.Empty:
                    break
            outcomes = [o for item in items if (o := self._on_item(run, *item)) is not None]
            if outcomes or (deadline is not None and time.monotonic() >= deadline):
                return outcomes

    def cancel(self, handle: StepHandle) -> None:
        if not isinstance(handle, DaskStepHandle) or not self._resolve(handle):
            return
        self._exits.canceled(handle)  # a worker that cannot stop it names it (_stuck)
        with self._lock:
            self._unsent = [u for u in self._unsent if u[0] is not handle]
            future, handle.future = handle.future, None
        if future is not None and self._client is not None:
            try:
                self._client.cancel([future], force=True, reason="plait canceled the step attempt")
            except Exception as exc:  # noqa: BLE001 - the scheduler may be gone already
                logger.debug("canceling %s failed: %s", handle.key, exc)

    def run_finished(self, run_id: str) -> None:
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:
            return
        for handle in list(run.handles.values()):
            self.cancel(handle)
        if run.job_data is not None:
            with self._lock:
                self._to_release.append(run.job_data)
        self._send()
        client = self._client
        if client is None or client.status != "running":
            return
        try:
            client.unsubscribe_topic(run.topic)
            if self._fenced:
                from plait_dask._fence import CONTROL_TOPIC

                client.log_event(CONTROL_TOPIC, {"truncate": run.topic})
            from plait_dask._worker import close_run

            client.run(close_run, run_id, on_error="return")
        except Exception as exc:  # noqa: BLE001 - cleanup must not fail a finished run
            logger.warning("cleaning up run %s on the Dask cluster failed: %s", run_id, exc)

    # ---- the coordinator's side --------------------------------------------------------------

    def _live_client(self) -> Client:
        client = self.client
        if client.status not in ("running", "newly-created"):
            raise ExecutorError(
                f"lost the connection to the Dask scheduler at {self.address} (client status "
                f"{client.status!r}); the steps in flight are lost. Check that the scheduler "
                "is running and reachable, then re-execute the run "
                "(`plait runs reexecute RUN_ID --from-failure`)"
            )
        return client

    def _run(self, run_id: str) -> RunAttempts:
        run = self._runs.get(run_id)
        if run is None:
            run = RunAttempts(run_id, f"plait-live-{run_id}")
            with self._lock:
                self._runs[run_id] = run
            self.client.subscribe_topic(run.topic, lambda event, r=run: self._on_topic(r, event))
        return run

    def _job_by_reference(self, client: Client, run: RunAttempts, task: StepTask) -> tuple[StepTask, Any]:
        """The task to send and its job data: a large job pickle is scattered once per
        run (to every worker, so it does not pull tasks to one) and left out of the task."""
        pickled = task.job.pickled
        if pickled is None or len(pickled) <= SCATTER_JOB_BYTES:
            return task, None
        if run.job_data is None:
            run.job_data = client.scatter(pickled, broadcast=True, hash=False)
        return replace(task, job=replace(task.job, pickled=None)), run.job_data

    def _send(self) -> None:
        """Hand the attempts submitted since the last call, and the futures to release, to
        the client's event loop in one go."""
        with self._lock:
            unsent, self._unsent = self._unsent, []
            releases, self._to_release = self._to_release, []
        if (unsent or releases) and self._client is not None:
            self._client.loop.add_callback(self._send_on_loop, self._client, unsent, releases)

    def _on_item(self, run: RunAttempts, kind: str, payload: Any) -> StepOutcome | None:
        if kind == "live":
            self.deliver(payload)
            return None
        if kind == "outcome":
            key, pickled = payload
            handle = run.handles.get(key)
            return None if handle is None else self._take(handle, pickled)
        if kind == "unsent":
            handle, exc = payload
            if not self._resolve(handle):
                return None
            self._live_client()  # a lost scheduler fails the run, not the step
            return unsent_outcome(handle, exc)
        return self._take(payload)

    def _resolve(self, handle: DaskStepHandle) -> bool:
        """Mark the attempt done; False if it already was (its news came twice)."""
        with self._lock:
            if handle.resolved:
                return False
            handle.resolved = True
            if handle.run is not None:
                handle.run.handles.pop(handle.key, None)
            return True

    def _take(self, handle: DaskStepHandle, pushed: bytes | None = None) -> StepOutcome | None:
        """The attempt's outcome, once: from the bytes its worker pushed, or its future."""
        if not self._resolve(handle):
            return None
        with self._lock:
            future, handle.future = handle.future, None
            if future is not None:
                self._to_release.append(future)
        if pushed is not None:
            import cloudpickle

            try:
                return cloudpickle.loads(pushed)
            except Exception as exc:  # noqa: BLE001 - e.g. an exception that won't unpickle
                logger.debug("the pushed outcome of %s did not load: %s", handle.key, exc)
        if future is None:
            return None
        outcome = outcome_of_future(handle, future, self._exits)
        if outcome is None:  # canceled, but not by plait
            self._live_client()  # raises if the scheduler went away
            outcome = StepOutcome.failed(
                handle.task, "lost", f"Dask canceled the task of step {handle.task.step_key!r}"
            )
        return outcome

    # ---- the client's event loop ---------------------------------------------------------------

    def _send_on_loop(self, client: Client, unsent: list, releases: list[Future]) -> None:
        """On the client's loop: submit, watch and release. Nothing may escape: an attempt
        that could not be sent is reported on its run's queue, or its run would wait forever."""
        from distributed.client import done_callback

        from plait_dask._worker import run_step_on_worker  # imported by start() already

        for handle, sent, job_data in unsent:
            run = handle.run
            try:
                future = client.submit(
                    run_step_on_worker, sent, run.topic, handle.key, job_data,
                    key=handle.key,
                    priority=priority_of(sent.tags),
                    resources=resources_of(sent.tags),
                    pure=False,
                    retries=0,
                )
            except Exception as exc:  # noqa: BLE001 - reported as the attempt's outcome
                run.queue.put(("unsent", (handle, exc)))
                continue
            with self._lock:
                canceled = handle.resolved
                if not canceled:
                    handle.future = future
            if canceled:  # plait canceled it while it was being sent
                client.loop.add_callback(
                    lambda f=future: client.cancel([f], force=True, asynchronous=True)
                )
            else:
                # Future.add_done_callback would run the callback on a thread of its own,
                # which outlives the client (and makes a later fork-based pool refuse to
                # start); on the loop the callback only puts the handle on a queue.
                client.loop.add_callback(
                    done_callback, future, lambda _f, h=handle, r=run: r.queue.put(("done", h))
                )
        for future in releases:
            try:
                future.release()
            except Exception as exc:  # noqa: BLE001 - a closed client released everything
                logger.debug("releasing %s failed: %s", future.key, exc)

    def _on_topic(self, run: RunAttempts, event: tuple[float, Any]) -> None:
        """A message on the run's topic: a pushed outcome or a live event."""
        from plait.executors.wire import event_from_json

        _, msg = event
        if "outcome" in msg:
            run.queue.put(("outcome", (msg.get("key"), msg["outcome"])))
            return
        try:
            step_event = event_from_json(msg["event"])
        except Exception:  # noqa: BLE001 - a malformed message is not worth a crash
            logger.debug("ignoring a malformed live event on %s: %r", run.topic, msg)
            return
        if step_event.event_type is EventType.STEP_START:
            handle = run.handles.get(task_key(run.run_id, step_event.step_key, step_event.attempt))
            if handle is not None:
                handle.worker = msg.get("worker")
        run.queue.put(("live", step_event))


__all__ = ["DaskExecutor", "DaskStepHandle", "task_key"]
