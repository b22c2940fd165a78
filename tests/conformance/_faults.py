"""Helpers of the fault suite: the gates ops block on, the engines faults are injected
into, a run in a thread whose events the test can await or act on, and the checks every
fault ends with (nothing recorded twice, no process left behind).

Reused from the executors' own tests: ``RunInThread`` and ``assert_recorded_once``
(tests/executors/test_celery.py), ``gone`` and ``_live_children``
(tests/executors/test_multiprocess.py).
"""

from __future__ import annotations

import collections
import contextlib
import os
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil
import pytest
from plait import Event, EventType, Instance, RunResult

from tests.executors.test_celery import RunInThread, assert_recorded_once
from tests.executors.test_multiprocess import _live_children, gone

EXECUTORS = ("multiprocess", "dask", "celery")
WALL_BOUND = 60.0
"""Every faulty run must end within this many seconds (generous: a hang is what we catch)."""
GATE_BOUND = 60.0
"""How long the rendezvous keeps an op waiting at a gate before answering CLOSED."""
EXIT_TIMEOUT = 15.0
"""How long a process that was killed (or must die) may take to be gone."""
STEP_ENDS = frozenset({EventType.STEP_SUCCESS, EventType.STEP_FAILURE, EventType.STEP_SKIPPED})


# ---- gates ------------------------------------------------------------------------------------


class Rendezvous:
    """Named one-shot gates on a loopback socket, shared by a test and its ops.

    An op sends ``WAIT <gate> <pid>`` and gets ``GO`` once the gate is open (``CLOSED``
    when the rendezvous closes first); ``OPEN <gate> <pid>`` opens it
    (``fault_jobs.wait_at`` / ``open_gate``). The rendezvous keeps the pids of the
    processes that came to each gate, so a test knows how often a step really ran and
    which process blocks where. The test opens gates and awaits them here, without
    polling. Closing the rendezvous (leaving its ``with`` block) sends every waiting op
    ``CLOSED``, so no op outlives its test blocked on a gate.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open: set[str] = set()
        self._visitors: collections.defaultdict[str, list[int]] = collections.defaultdict(list)
        self._closed = False
        self._server = _GateServer(("127.0.0.1", 0), _GateHandler)
        self._server.rendezvous = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),
                                        name="fault-rendezvous", daemon=True)
        self._thread.start()

    def config(self) -> dict[str, Any]:
        """Op config (``fault_jobs.GateConfig``) that reaches this rendezvous."""
        return {"config": {"port": self.port}}

    def open(self, gate: str) -> None:
        with self._cond:
            self._open.add(gate)
            self._cond.notify_all()

    def is_open(self, gate: str) -> bool:
        with self._cond:
            return gate in self._open

    def visitors(self, gate: str) -> list[int]:
        """The pid of each op that waited at, or opened, ``gate``: who got there how often."""
        with self._cond:
            return list(self._visitors[gate])

    def wait_visitor(self, gate: str, timeout: float) -> int:
        """Block until a process came to ``gate`` (up to ``timeout`` s); its pid."""
        with self._cond:
            assert self._cond.wait_for(lambda: self._visitors[gate], timeout), (
                f"no step came to gate {gate!r} within {timeout:g}s")
            return self._visitors[gate][0]

    def _visited(self, gate: str, pid: int) -> None:
        with self._cond:
            self._visitors[gate].append(pid)
            self._cond.notify_all()

    def wait_opened(self, gate: str, timeout: float) -> bool:
        """Block until ``gate`` is open (an op opened it), up to ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: gate in self._open, timeout)

    def _await(self, gate: str) -> bytes:
        with self._cond:
            self._cond.wait_for(lambda: gate in self._open or self._closed, GATE_BOUND)
            return b"GO\n" if gate in self._open else b"CLOSED\n"

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(EXIT_TIMEOUT)

    def __enter__(self) -> Rendezvous:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _GateServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    rendezvous: Rendezvous


class _GateHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        rendezvous: Rendezvous = self.server.rendezvous  # type: ignore[attr-defined]
        words = self.rfile.readline().decode(errors="replace").split()
        if len(words) != 3 or not words[2].isdigit():
            return
        verb, gate, pid = words
        rendezvous._visited(gate, int(pid))
        if verb == "OPEN":
            rendezvous.open(gate)
            reply = b"OK\n"
        elif verb == "WAIT":
            reply = rendezvous._await(gate)
        else:
            return
        with contextlib.suppress(OSError):  # the op's process may have been killed meanwhile
            self.wfile.write(reply)


# ---- engines ----------------------------------------------------------------------------------


@dataclass
class Engine:
    """One executor, configured to reach a test engine."""

    name: str
    config: dict[str, Any]
    dask_address: str | None = None
    celery_worker: Any = None
    """The private Celery worker (tests.services.celery_workers.WorkerProcess), if any."""

    def run_config(self, ops: dict[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
        return {"execution": {self.name: self.config}, "ops": ops or {}, **sections}

    def assert_replaced(self, killed: int) -> None:
        """A killed worker process is gone, and its engine still has a worker to serve."""
        assert wait_gone([killed]) == [], f"the killed worker process {killed} is still running"
        if self.dask_address is not None:
            from distributed import Client

            with Client(self.dask_address, set_as_default=False, timeout=EXIT_TIMEOUT) as client:
                client.wait_for_workers(1, timeout=30)
                pids = client.run(os.getpid).values()
            assert killed not in pids and len(pids) >= 1, pids
        if self.celery_worker is not None:
            assert self.celery_worker.proc.poll() is None, "the Celery worker itself died"
            assert killed not in self.celery_worker.pool_pids()


def shared_engine(executor: str, request: pytest.FixtureRequest) -> Engine:
    """The session's engines (or a fresh 2-worker pool), for faults that kill no worker."""
    if executor == "multiprocess":
        return Engine(executor, {"max_concurrent": 2})
    if executor == "dask":
        address = request.getfixturevalue("dask_address")
        return Engine(executor, {"address": address}, dask_address=address)
    fleet = request.getfixturevalue("celery_fleet")
    return Engine(executor, fleet.config())


def private_engine(executor: str, request: pytest.FixtureRequest) -> Engine:
    """An engine with one slot of its own (one worker process, one thread), which a test
    may break: a 1-process pool, a 1-worker LocalCluster, one Celery worker on a queue of
    its own. Celery redelivers a step whose process died up to ``max_redeliveries`` times
    before the attempt fails; 0 makes every engine fail the attempt at the first death, so
    the op's RetryPolicy alone decides what follows."""
    if executor == "multiprocess":
        return Engine(executor, {"max_concurrent": 1})
    if executor == "dask":
        cluster = request.getfixturevalue("dask_cluster_factory")(n_workers=1, threads_per_worker=1)
        return Engine(executor, {"address": cluster.scheduler_address},
                      dask_address=cluster.scheduler_address)
    fleet = request.getfixturevalue("celery_fleet")
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    worker = request.getfixturevalue("worker_factory")(fleet.broker, fleet.backend, [queue])
    return Engine(executor, fleet.config(queue=queue, max_redeliveries=0), celery_worker=worker)


# ---- running -------------------------------------------------------------------------------------


class FaultRun(RunInThread):
    """``job.execute`` in a thread (``raise_on_error=False``); ``hooks`` see every event
    as it is recorded, on the recording thread, before the run goes on (e.g. to delete
    storage before the next step is submitted)."""

    def __init__(self, job_def: Any, *, hooks: Iterable[Callable[[Event], None]] = (),
                 **kwargs: Any) -> None:
        super().__init__(job_def, **kwargs)
        self.hooks = list(hooks)
        self.wall = 0.0
        self._started = 0.0

    def _on_event(self, event: Event) -> None:
        super()._on_event(event)
        for hook in self.hooks:
            hook(event)

    def start(self) -> FaultRun:
        self._started = time.monotonic()
        super().start()
        return self

    def ended(self, timeout: float) -> bool:
        """Whether the run ends within ``timeout`` seconds (it may go on if not)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def join(self, timeout: float = WALL_BOUND + 30) -> RunResult:
        result = super().join(timeout)
        self.wall = time.monotonic() - self._started
        return result


def pid_of(result_or_events: RunResult | list[Event], step_key: str, attempt: int = 0) -> int | None:
    """The pid a step's op logged (``pid=``) on ``attempt``, if that LOG was recorded."""
    events = getattr(result_or_events, "events", result_or_events)
    return next((e.data["pid"] for e in events if e.event_type is EventType.LOG
                 and e.step_key == step_key and e.attempt == attempt and "pid" in e.data), None)


def failure_of(result: RunResult, step_key: str) -> Event:
    (event,) = [e for e in result.events
                if e.event_type is EventType.STEP_FAILURE and e.step_key == step_key]
    return event


# ---- checks ----------------------------------------------------------------------------------------


def check_recorded_once(result: RunResult, instance: Instance, ended: Iterable[str] = ()) -> None:
    """Nothing was recorded twice: sequence numbers run 1..N without gaps (in memory and in
    the run storage, which holds the same events once), every (step, attempt, type,
    message) appears once, and every step that has events, plus each step in ``ended``,
    has exactly one STEP_SUCCESS, final STEP_FAILURE or STEP_SKIPPED."""
    assert_recorded_once(result)
    stored = instance.storage.get_events(result.run_id)
    assert [(e.seq, e.event_type, e.step_key, e.message) for e in stored] == [
        (e.seq, e.event_type, e.step_key, e.message) for e in result.events
    ], "the run storage does not hold exactly the run's events"
    counted = collections.Counter(
        (e.step_key, e.attempt, e.event_type, e.message) for e in result.events
    )
    assert [k for k, n in counted.items() if n > 1] == [], "events recorded twice"
    ends = collections.Counter(e.step_key for e in result.events if e.event_type in STEP_ENDS)
    steps = {e.step_key for e in result.events if e.step_key} | set(ended)
    wrong = {step: ends[step] for step in sorted(steps) if ends[step] != 1}
    assert wrong == {}, f"steps without exactly one end event: {wrong}"


def wait_gone(pids: Iterable[int], timeout: float = EXIT_TIMEOUT) -> list[int]:
    """Block until each process has exited (a zombie counts), up to ``timeout`` s in all;
    returns those still running."""
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p.pid for p in alive if not gone(p.pid)]


@dataclass
class ProcessWatch:
    """The test process's live descendants before a test, to find what it left behind. A
    new process under one that was there before (a session Celery worker replacing a pool
    process a step's fault killed) belongs to that service, not to the test."""

    before: set[int] = field(default_factory=_live_children)

    def leftovers(self) -> list[int]:
        new = {pid for pid in _live_children() - self.before if not self._under_a_service(pid)}
        return wait_gone(new)

    def _under_a_service(self, pid: int) -> bool:
        try:
            return any(parent.pid in self.before for parent in psutil.Process(pid).parents())
        except psutil.NoSuchProcess:
            return False


@contextlib.contextmanager
def no_orphans() -> Iterator[None]:
    """Fails if a process started while the block ran still runs after it (bounded wait)."""
    watch = ProcessWatch()
    yield
    left = watch.leftovers()
    assert left == [], f"processes left running after the test: {describe(left)}"


def describe(pids: Iterable[int]) -> list[str]:
    """``pid (parent ppid): command line`` of each process, for failure messages."""
    found = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            found.append(f"{pid} (parent {proc.ppid()}, {proc.status()}): "
                         f"{' '.join(proc.cmdline())[:200]}")
        except psutil.Error:
            found.append(f"{pid} (gone)")
    return found
