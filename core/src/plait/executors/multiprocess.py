"""The multiprocess executor: a pool of warm worker processes on this machine.

``start()`` (entering the executor) starts ``max_concurrent`` worker processes and waits
until each has imported ``preload_modules``; they then run step after step, run after run,
until ``stop()``. Keep ``with executor:`` open around several ``job.execute(executor=...)``
calls and the same warm workers serve them all.

Everything happens on the coordinator's thread, in ``submit`` / ``wait`` / ``cancel``;
there is no reader thread and no lock:

- ``submit`` queues the task and hands it to an idle worker, if one is ready, by writing
  it to that worker's own pipe. The job's pickle travels once per worker (then it is named
  by its cache key); the task itself is a few hundred bytes.
- ``wait`` blocks in one selector (epoll on Linux) on every worker's result pipe and
  process sentinel at once. Live events (STEP_START, LOG) are passed to
  ``deliver`` as they arrive; an outcome is attached to its handle and frees the worker
  for the next queued task. A sentinel firing means a worker died: its step attempt
  fails with kind ``crash`` and the signal or exit code, and a new worker replaces it.
- ``cancel`` (op timeout, run cancel) drops a queued task, or sends SIGTERM to the
  worker running it; SIGKILL follows ``TERMINATE_GRACE_SECONDS`` later (checked by
  ``wait``, and awaited by ``run_finished`` and ``stop``), and the worker is replaced.

Why no reader thread: the coordinator spends its time blocked in ``wait`` while steps
run, so live events are read there as they arrive, one hop less than a thread handing
them over through a queue; with one thread there is no lock to take, a worker's state
changes in one place only, and ``fork`` stays safe as long as the process runs no other
thread (checked before every fork; refused otherwise). The price: between ``wait`` calls
(the coordinator recording an outcome, or no run at all) nobody reads, and a worker's
death is noticed at the next ``wait``. One executor serves one run at a time (runs may
follow each other).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import pickle
import selectors
import shutil
import signal
import tempfile
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from plait.errors import ExecutorError
from plait.events import StepEvent
from plait.executors import _mp_worker as proto
from plait.executors._mp_process import WorkerProcess, death_cause, other_threads
from plait.executors.base import (
    Executor,
    JobRef,
    StepFailure,
    StepHandle,
    StepOutcome,
    StepTask,
)

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 60.0
"""How long ``start()`` waits for every worker to import plait and the preload modules."""
TERMINATE_GRACE_SECONDS = 2.0
"""Between SIGTERM and SIGKILL when a running step is canceled or timed out."""
STOP_TIMEOUT_SECONDS = 5.0
"""How long ``stop()`` lets workers tear resources down before killing them."""
JOB_KEYS_KEPT = 8
STARTUP_FAILURES_TOLERATED = 3
"""Replacement workers in a row that may die before they are ready (e.g. OOM-killed while
importing) before the executor gives up; during ``start()`` the first one is fatal."""


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class MultiprocessConfig(BaseModel):
    """``execution: {multiprocess: {...}}``."""

    model_config = ConfigDict(extra="forbid")

    max_concurrent: int = Field(default_factory=_cpu_count, ge=1)
    """Worker processes in the pool, hence steps running at once (default: usable CPUs)."""
    start_method: Literal["spawn", "forkserver", "fork"] = "spawn"
    """How workers are made: ``spawn`` (a fresh interpreter, the safe default),
    ``forkserver`` (forked from a clean server process), ``fork`` (a copy of this process:
    fastest start, refused while other threads run here)."""
    preload_modules: list[str] = Field(default_factory=list)
    """Modules each worker imports before it reports ready (e.g. heavy libraries)."""

    @field_validator("start_method")
    @classmethod
    def _available(cls, method: str) -> str:
        available = multiprocessing.get_all_start_methods()
        if method not in available:
            raise ValueError(
                f"start method {method!r} is not available on this platform; use one of {available}"
            )
        return method


@dataclass(eq=False)
class MpHandle(StepHandle):
    """A submitted step attempt: queued (no worker), running on ``worker``, or done."""

    id: int = 0
    worker: WorkerProcess | None = None
    events: list[StepEvent] = field(default_factory=list)
    """Live events received, kept for the outcome if the worker dies."""
    outcome: StepOutcome | None = None
    canceled: bool = False
    returned: bool = False


class MultiprocessExecutor(Executor):
    """Runs steps on a persistent pool of local worker processes."""

    name: ClassVar[str] = "multiprocess"
    config_model: ClassVar[type[BaseModel]] = MultiprocessConfig
    crosses_processes: ClassVar[bool] = True

    config: MultiprocessConfig

    def __init__(self, config: BaseModel | dict | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._workers: dict[int, WorkerProcess] = {}
        self._queue: deque[MpHandle] = deque()
        self._ids = itertools.count(1)
        self._spawned = itertools.count(1)
        self._job_keys: OrderedDict[int, tuple[bytes, str]] = OrderedDict()
        self._broken: str | None = None
        self._startup_failures = 0
        self._stopping = False
        self._started = False
        self._opening = False
        self._run_id: str | None = None
        """The run being served; another one at the same time is refused."""
        self._ctx: Any = None
        self._tmpdir: str | None = None
        self._selector: selectors.BaseSelector | None = None
        self._finalizer: weakref.finalize | None = None

    # ---- pool lifecycle -------------------------------------------------------------

    @property
    def worker_pids(self) -> list[int]:
        """Pids of the live pool processes (for monitoring and tests)."""
        return sorted(w.pid for w in self._workers.values() if not w.exited)

    def start(self) -> None:
        method = self.config.start_method
        if method == "fork":
            self._refuse_unsafe_fork()
        self._ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            # the server imports plait once, so each worker (and each replacement) forks ready;
            # this only takes effect if this process has not started its fork server yet
            self._ctx.set_forkserver_preload(
                ["plait.executors._mp_worker", *self.config.preload_modules]
            )
        self._tmpdir = tempfile.mkdtemp(prefix="plait-mp-")
        self._selector = selectors.DefaultSelector()
        self._broken = None
        self._startup_failures = 0
        self._stopping = False
        self._started = True
        self._opening = True
        self._finalizer = weakref.finalize(self, _kill_all, self._workers, self._tmpdir)
        try:
            for _ in range(self.config.max_concurrent):
                self._spawn()
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while not self._broken and not all(w.ready for w in self._workers.values()):
                if time.monotonic() >= deadline:
                    self._broken = (
                        f"the workers were not ready {START_TIMEOUT_SECONDS:g}s after they "
                        "started (are preload_modules very slow to import?)"
                    )
                    break
                self._pump(deadline)
        except BaseException:
            self.stop()
            raise
        finally:
            self._opening = False
        if self._broken:
            problem = self._broken
            self.stop()
            raise ExecutorError(f"executor 'multiprocess' could not start its workers: {problem}")

    def stop(self) -> None:
        """Stop every worker: idle ones finish tearing down, busy ones are terminated;
        all are joined within ``STOP_TIMEOUT_SECONDS``, stragglers killed."""
        if not self._started:
            return
        self._stopping = True
        now = time.monotonic()
        workers = list(self._workers.values())
        for worker in workers:
            if worker.idle:
                with contextlib.suppress(OSError):
                    worker.send(pickle.dumps((proto.STOP,)))
            else:
                worker.terminate(TERMINATE_GRACE_SECONDS, now)
        deadline = now + STOP_TIMEOUT_SECONDS
        for worker in workers:
            until = deadline if worker.kill_at is None else min(deadline, worker.kill_at)
            worker.reap(max(0.0, until - time.monotonic()))
            self._forget(worker)
        self._workers.clear()
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        for handle in self._queue:
            self._finish(handle, self._lost(handle.task, "the executor stopped before the step was started"))
        self._queue.clear()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        self._started = False
        self._stopping = False
        self._run_id = None

    def run_finished(self, run_id: str) -> None:
        """Workers tear down the run's resources; workers still being terminated (canceled
        or timed-out steps) are awaited, so a finished run leaves no stray process."""
        if self._run_id == run_id:
            self._run_id = None
        message = pickle.dumps((proto.CLOSE_RUN, run_id))
        for worker in list(self._workers.values()):
            if worker.ready and worker.kill_at is None and not worker.exited:
                with contextlib.suppress(OSError):  # dead: the next wait handles it
                    worker.send(message)
        pending = [w.kill_at for w in self._workers.values() if w.kill_at is not None]
        if pending:
            deadline = max(pending) + STOP_TIMEOUT_SECONDS
            while time.monotonic() < deadline and any(
                w.kill_at is not None for w in self._workers.values()
            ):
                self._pump(deadline)

    def _spawn(self) -> None:
        if self.config.start_method == "fork":
            threads = other_threads()
            if threads:
                self._break(
                    f"a worker died and cannot be replaced: start_method 'fork' is unsafe while "
                    f"other threads run in this process ({', '.join(threads)})"
                )
                return
        assert self._tmpdir is not None
        number = next(self._spawned)
        inherited: list[int] = []
        if self.config.start_method == "fork":
            # a forked worker inherits our ends of its siblings' pipes; holding them, it would
            # keep a sibling from seeing EOF (its cue to exit) if this process died
            for other in self._workers.values():
                inherited += [other.tasks.fileno(), other.results.fileno(), other.sentinel]
            assert self._selector is not None
            with contextlib.suppress(AttributeError):  # the epoll/kqueue fd, when there is one
                inherited.append(self._selector.fileno())  # type: ignore[attr-defined]
        worker = WorkerProcess(
            self._ctx, number, self.config.preload_modules,
            os.path.join(self._tmpdir, f"worker-{number}.fault"), inherited,
        )
        self._workers[worker.pid] = worker
        assert self._selector is not None
        self._selector.register(worker.results, selectors.EVENT_READ, (worker, False))
        self._selector.register(worker.sentinel, selectors.EVENT_READ, (worker, True))

    def _forget(self, worker: WorkerProcess) -> None:
        """Stop watching an exited worker and release its pipes."""
        if self._selector is not None:
            for obj in (worker.results, worker.sentinel):
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(obj)
        worker.close()

    def _refuse_unsafe_fork(self) -> None:
        threads = other_threads()
        if threads:
            raise ExecutorError(
                "executor 'multiprocess' with start_method 'fork' copies this process with "
                f"only the calling thread, but other threads are running ({', '.join(threads)}); "
                "a lock one of them holds would stay locked forever in the workers. Use "
                "start_method 'spawn' (the default) or 'forkserver', or start no threads before "
                "the executor"
            )

    def _break(self, why: str) -> None:
        """No worker can serve steps any more: fail what waits for one, and what comes."""
        self._broken = why
        while self._queue:
            handle = self._queue.popleft()
            self._finish(handle, StepOutcome.failed(handle.task, "crash", why))

    # ---- submit / wait / cancel -----------------------------------------------------

    def submit(self, task: StepTask) -> StepHandle:
        if not self._started:
            raise ExecutorError("the multiprocess executor is not started; use `with executor:`")
        if self._run_id != task.run_id:
            if self._run_id is not None:
                raise ExecutorError(
                    f"this multiprocess executor is serving run {self._run_id} and got a step of "
                    f"run {task.run_id}: an executor instance runs one run at a time (runs may "
                    "follow each other); give each concurrent run its own executor"
                )
            self._run_id = task.run_id
        handle = MpHandle(task, id=next(self._ids))
        if self._broken:
            handle.outcome = StepOutcome.failed(task, "crash", self._broken)
            return handle
        self._queue.append(handle)
        self._dispatch()
        return handle

    def wait(self, handles: Sequence[StepHandle], timeout: float | None) -> list[StepOutcome]:
        deadline = None if timeout is None else time.monotonic() + timeout
        mine = [h for h in handles if isinstance(h, MpHandle)]
        while True:
            done = [h for h in mine if h.outcome is not None and not h.returned]
            if done:
                for handle in done:
                    handle.returned = True
                return [h.outcome for h in done if h.outcome is not None]
            if deadline is not None and time.monotonic() >= deadline:
                return []
            if not self._workers:
                # no worker is left (the pool broke): nothing can finish, so say so at once
                pending = [h for h in mine if not h.canceled and h.outcome is None]
                for handle in pending:
                    self._finish(handle, self._lost(handle.task, self._broken or "no worker is left"))
                if pending:
                    continue
                if deadline is not None:
                    time.sleep(max(0.0, deadline - time.monotonic()))  # nothing to watch until then
                return []
            self._pump(deadline)

    def cancel(self, handle: StepHandle) -> None:
        if not isinstance(handle, MpHandle) or handle.canceled:
            return
        handle.canceled = True
        if handle.outcome is not None:
            return
        if handle in self._queue:
            self._queue.remove(handle)
        elif handle.worker is not None and handle.worker.current is handle:
            handle.worker.terminate(TERMINATE_GRACE_SECONDS, time.monotonic())

    # ---- dispatching ----------------------------------------------------------------

    def _dispatch(self) -> None:
        """Hand queued tasks to idle workers (in submission order)."""
        for worker in list(self._workers.values()):
            if not self._queue:
                return
            if not worker.idle:
                continue
            handle = self._queue.popleft()
            try:
                message = self._message(handle, worker)
            except Exception as exc:  # noqa: BLE001 - a task that does not pickle
                self._finish(handle, StepOutcome.failed(
                    handle.task, "error", f"the step task could not be sent to a worker: "
                    f"{type(exc).__name__}: {exc}"))
                continue
            try:
                worker.send(message)
            except OSError:
                # it died before reading: the task never started, so it goes to another worker
                self._queue.appendleft(handle)
                worker.unreachable = True
                continue
            worker.current = handle
            handle.worker = worker

    def _message(self, handle: MpHandle, worker: WorkerProcess) -> bytes:
        task = handle.task
        job_key = job_bytes = None
        if task.job.pickled is not None:
            job_key = self._job_key(task.job)
            if job_key in worker.jobs:
                proto.remember(worker.jobs, job_key)
            else:
                job_bytes = task.job.pickled
                proto.remember(worker.jobs, job_key, True)
        return pickle.dumps(
            (proto.RUN, handle.id, job_key, job_bytes, proto.encode_task(task, job_key is None)),
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    def _job_key(self, ref: JobRef) -> str:
        """``ref.cache_key`` hashes the job bytes; runs reuse one bytes object, so hash once."""
        pickled = ref.pickled
        assert pickled is not None
        known = self._job_keys.get(id(pickled))
        if known is not None and known[0] is pickled:
            return known[1]
        key = ref.cache_key
        self._job_keys[id(pickled)] = (pickled, key)
        while len(self._job_keys) > JOB_KEYS_KEPT:
            self._job_keys.popitem(last=False)
        return key

    # ---- reading the workers --------------------------------------------------------

    def _pump(self, deadline: float | None) -> None:
        """Block until a worker sends something, a worker exits, a SIGKILL is due or the
        deadline passes; handle what happened."""
        now = time.monotonic()
        kills = [w.kill_at for w in self._workers.values() if w.kill_at is not None and not w.killed]
        until = min([t for t in (deadline, *kills) if t is not None], default=None)
        timeout = None if until is None else max(0.0, until - now)
        assert self._selector is not None
        exited = []
        for key, _ in self._selector.select(timeout):
            worker, is_sentinel = key.data
            if is_sentinel:
                exited.append(worker)
            else:
                self._read(worker)
        for worker in exited:
            self._on_exit(worker)
        now = time.monotonic()
        for worker in list(self._workers.values()):
            if worker.kill_at is not None and worker.kill_at <= now and not worker.killed:
                worker.signal(signal.SIGKILL)  # the grace is over; the sentinel reports the exit
                worker.killed = True
        self._dispatch()

    def _read(self, worker: WorkerProcess) -> None:
        """One message (the selector reports the pipe again while more are waiting)."""
        if worker.exited:
            return
        try:
            data = worker.results.recv_bytes()
        except (EOFError, OSError):
            self._on_exit(worker)  # the worker is gone (or going): its pipe closed
            return
        try:
            message = pickle.loads(data)
        except Exception as exc:  # noqa: BLE001
            self._on_unreadable(worker, exc)
            return
        self._on_message(worker, message)

    def _on_message(self, worker: WorkerProcess, message: tuple) -> None:
        kind = message[0]
        if kind == proto.EVENT:
            handle = worker.current
            if handle is not None and not handle.canceled:
                handle.events.append(message[1])
                self._deliver(message[1])
        elif kind in (proto.DONE, proto.FAILED):
            handle = worker.current
            if handle is None or handle.id != message[1]:
                return  # stale: a task this executor no longer tracks
            worker.current = None
            if kind == proto.DONE:
                outcome = message[2]
            else:
                outcome = StepOutcome.failed(handle.task, message[2], message[3], handle.events)
            self._finish(handle, outcome)
        elif kind == proto.READY:
            worker.ready = True
            self._startup_failures = 0
        elif kind == proto.INIT_FAILED:
            self._break(f"worker process {worker.pid} failed to start:\n{message[1]}")

    def _on_unreadable(self, worker: WorkerProcess, exc: Exception) -> None:
        handle = worker.current
        if handle is None:
            log.warning("unreadable message from worker %s: %s", worker.pid, exc)
            return
        worker.current = None
        self._finish(handle, self._lost(
            handle.task, f"the outcome of step {handle.task.step_key!r} could not be read in "
            f"the coordinator: {type(exc).__name__}: {exc}", handle.events))

    def _deliver(self, event: StepEvent) -> None:
        try:
            self.deliver(event)
        except Exception:  # noqa: BLE001 - like in-process: a live event's listener never fails the step
            log.exception("an on_event listener failed on a live event")

    def _finish(self, handle: MpHandle, outcome: StepOutcome) -> None:
        if not handle.canceled and handle.outcome is None:
            handle.outcome = outcome

    def _on_exit(self, worker: WorkerProcess) -> None:
        """A worker exited: read what it still sent, report the step it ran, replace it."""
        if worker.exited or self._workers.get(worker.pid) is not worker:
            return
        exitcode = worker.reap(1.0)  # also kills what it left in its group, before reading on
        self._read_rest(worker)
        fault = worker.fault_text()
        del self._workers[worker.pid]
        self._forget(worker)
        handle = worker.current
        if handle is not None and not handle.canceled and handle.outcome is None:
            message = (
                f"worker process {worker.pid} {death_cause(exitcode)} while running step "
                f"{handle.task.step_key!r}"
            )
            self._finish(handle, StepOutcome(
                handle.task.run_id, handle.task.step_key, handle.task.attempt,
                events=list(handle.events),
                failure=StepFailure(kind="crash", message=message, error_type="WorkerCrash", stack=fault),
            ))
        if self._stopping or self._broken:
            return
        if not worker.ready and worker.kill_at is None:
            self._startup_failures += 1
            if self._opening or self._startup_failures >= STARTUP_FAILURES_TOLERATED:
                self._break(
                    f"worker process {worker.pid} {death_cause(exitcode)} before it was ready "
                    "(see its stderr above; a preload module failing to import is a common cause)"
                )
                return
        self._spawn()

    def _read_rest(self, worker: WorkerProcess) -> None:
        """A dead worker's last messages (its outcome may have left just before it died)."""
        while not worker.exited:
            try:
                if not worker.results.poll():
                    return
                data = worker.results.recv_bytes()
            except (EOFError, OSError):
                return
            try:
                self._on_message(worker, pickle.loads(data))
            except Exception as exc:  # noqa: BLE001
                self._on_unreadable(worker, exc)

    @staticmethod
    def _lost(task: StepTask, message: str, events: Sequence[StepEvent] = ()) -> StepOutcome:
        return StepOutcome.failed(task, "lost", message, events)


def _kill_all(workers: dict[int, WorkerProcess], tmpdir: str) -> None:
    """At interpreter exit (or garbage collection) of a started executor that was never
    stopped: no worker may outlive its coordinator."""
    for worker in list(workers.values()):
        worker.signal(signal.SIGKILL)
    for worker in list(workers.values()):
        with contextlib.suppress(ValueError):
            worker.process.join(1.0)
    shutil.rmtree(tmpdir, ignore_errors=True)
