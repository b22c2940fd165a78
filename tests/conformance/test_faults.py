"""The fault suite: every cross-process executor survives the same faults.

plait promises that a run never hangs when a worker dies, that outputs are never
half-written and that no event is recorded twice. Each fault below runs on
``multiprocess``, ``dask`` and ``celery`` against real engines (tests/services/) and must
end in a defined run state within ``WALL_BOUND`` seconds, with the right failure kind,
every event recorded once (``check_recorded_once``) and no process left behind (the
autouse ``orphans`` fixture; a killed worker must be gone and replaced).

Faults that kill workers run on an engine of their own (``private``: a 1-process pool, a
1-worker LocalCluster, one Celery worker on its own queue), so the session's shared
engines (``shared``) stay healthy. Ops block at gates of a ``Rendezvous`` (a loopback
socket), which tells the test which process waits where; the test acts on what it
awaits, never on a sleep. Celery runs with ``max_redeliveries=0`` on its private worker,
so that, as on the other engines, the first death fails the attempt and the op's
RetryPolicy alone decides (redelivery is tested in tests/executors/test_celery.py).

Jobs: tests/conformance/fault_jobs.py; helpers: tests/conformance/_faults.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from plait import Event, EventType, Instance, RunStatus

from tests.conformance import fault_jobs
from tests.conformance._faults import (
    EXECUTORS,
    EXIT_TIMEOUT,
    WALL_BOUND,
    Engine,
    FaultRun,
    Rendezvous,
    check_recorded_once,
    failure_of,
    no_orphans,
    pid_of,
    private_engine,
    shared_engine,
    wait_gone,
)

pytestmark = [pytest.mark.services, pytest.mark.timeout(150)]

DEATH_KINDS = {"multiprocess": {"crash"}, "dask": {"lost", "crash"}, "celery": {"lost", "crash"}}
"""What DESIGN.md allows for an attempt whose process died: ``crash`` (the executor saw
its process die) or ``lost`` (the engine lost it) — never ``error``."""


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def shared(executor: str, request: pytest.FixtureRequest) -> Engine:
    return shared_engine(executor, request)


@pytest.fixture
def private(executor: str, request: pytest.FixtureRequest) -> Engine:
    return private_engine(executor, request)


@pytest.fixture(autouse=True)
def orphans(request: pytest.FixtureRequest) -> Any:
    """No process the test started outlives it. The session services the test uses are
    started first: they are not the test's."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    if params.get("executor") == "celery":
        request.getfixturevalue("celery_fleet")
    if params.get("executor") == "dask" and "shared" in request.fixturenames:
        request.getfixturevalue("dask_address")
    if "s3_url" in request.fixturenames:
        request.getfixturevalue("s3_endpoint")
    with no_orphans():
        yield


@pytest.fixture
def home(tmp_path: Path) -> Instance:
    return Instance(tmp_path / "home")


def _kill_at(run: FaultRun, step_key: str, gates: Rendezvous, gate: str) -> int:
    """Await the step blocking at ``gate`` and its live LOG recorded (the run's log shows
    it started), then SIGKILL its process."""
    pid = gates.wait_visitor(gate, WALL_BOUND)
    assert run.wait_for(EventType.LOG, step_key, timeout=WALL_BOUND).data["pid"] == pid
    os.kill(pid, signal.SIGKILL)
    return pid


# ---- 1. SIGKILL of the worker process mid-step; 2. os._exit(3) in the step ---------------------


@pytest.mark.parametrize("retry", [False, True], ids=["no-retry", "retry"])
def test_a_worker_killed_mid_step(executor: str, private: Engine, retry: bool, home: Instance) -> None:
    job_def = fault_jobs.kill_retry_job if retry else fault_jobs.kill_job
    with Rendezvous() as gates:
        run = FaultRun(job_def, instance=home,
                       run_config=private.run_config({"victim": gates.config()})).start()
        killed = _kill_at(run, "victim", gates, "never")
        result = run.join()
        ran = len(gates.visitors("never"))
    assert run.wall < WALL_BOUND
    private.assert_replaced(killed)
    _check_death(executor, result, "victim", retry, killed)
    assert "SIGKILL" in _death_message(result, "victim", retry)
    assert ran == 1, f"the killed attempt ran {ran} times"
    check_recorded_once(result, home, ended={"victim", "after"})


@pytest.mark.parametrize("retry", [False, True], ids=["no-retry", "retry"])
def test_a_step_that_exits_its_process(executor: str, private: Engine, retry: bool,
                                       home: Instance) -> None:
    job_def = fault_jobs.exit_retry_job if retry else fault_jobs.exit_job
    with Rendezvous() as gates:
        run = FaultRun(job_def, instance=home,
                       run_config=private.run_config({"quitter": gates.config()})).start()
        result = run.join()
        ran = [gates.visitors(f"quitter-ran-{attempt}") for attempt in (0, 1)]
    assert run.wall < WALL_BOUND
    assert [len(pids) for pids in ran] == [1, int(retry)], f"runs of attempts 0 and 1: {ran}"
    died = ran[0][0]
    private.assert_replaced(died)
    _check_death(executor, result, "quitter", retry, died)
    message = _death_message(result, "quitter", retry)
    if executor in ("multiprocess", "dask"):
        assert f"worker process {died} exited with code 3 while running step 'quitter'" in message
    elif executor == "celery":
        assert "exitcode 3" in message
    check_recorded_once(result, home, ended={"quitter", "after"})


def test_a_killed_worker_leaves_no_process_its_step_started(
        executor: str, private: Engine, home: Instance) -> None:
    with Rendezvous() as gates:
        run = FaultRun(fault_jobs.spawn_job, instance=home,
                       run_config=private.run_config({"spawner": gates.config()})).start()
        killed = _kill_at(run, "spawner", gates, "spawned")
        child = run.wait_for(EventType.LOG, "spawner").data["child"]
        result = run.join()
    try:
        assert result.status is RunStatus.FAILURE
        assert failure_of(result, "spawner").data["kind"] in DEATH_KINDS[executor]
        private.assert_replaced(killed)
        # (once its parent died the child is no longer under this test: ask for it by pid)
        left = wait_gone([child], timeout=5.0)
        assert left == [], f"the step's child process {child} outlived its killed worker"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def _death_message(result: Any, step_key: str, retry: bool) -> str:
    kind = EventType.STEP_UP_FOR_RETRY if retry else EventType.STEP_FAILURE
    (event,) = [e for e in result.events_for(step_key) if e.event_type is kind]
    return event.message


def _check_death(executor: str, result: Any, step_key: str, retry: bool, pid: int) -> None:
    """The attempt whose process died failed as crash/lost (never error); without retries
    the run failed and skipped what depends on it, with one the retry ran elsewhere."""
    events = result.events_for(step_key)
    starts = [e.attempt for e in events if e.event_type is EventType.STEP_START]
    # Dask sends live events in batches: a process that exits at once takes its STEP_START
    # with it, and a dead process reports no outcome to recover it from
    start_may_die = executor == "dask" and step_key == "quitter"
    if retry:
        assert result.status is RunStatus.SUCCESS, [str(e) for e in result.events]
        (up,) = [e for e in events if e.event_type is EventType.STEP_UP_FOR_RETRY]
        assert up.attempt == 0 and up.data["kind"] in DEATH_KINDS[executor], str(up)
        assert "died" in up.message or "exited" in up.message, up.message
        assert pid_of(result, step_key, attempt=1) not in (pid, None)  # a new process ran it
        assert result.output_for("after") == 43
        (loaded,) = [e for e in result.events_for("after") if e.event_type is EventType.LOADED_INPUT]
        assert loaded.data["location"].endswith(f"/{step_key}/retry-1/result"), loaded.data
        assert starts in ([0, 1], [1] if start_may_die else [0, 1])
    else:
        assert result.status is RunStatus.FAILURE
        failure = failure_of(result, step_key)
        assert failure.data["kind"] in DEATH_KINDS[executor], str(failure)
        assert "died" in failure.message or "exited" in failure.message, failure.message
        assert str(pid) in failure.message
        assert [e.event_type for e in result.events_for("after")] == [EventType.STEP_SKIPPED]
        assert starts in ([0], [] if start_may_die else [0])


# ---- 3. a step over its timeout ------------------------------------------------------------------


def test_a_step_over_its_timeout(executor: str, shared: Engine, home: Instance) -> None:
    with Rendezvous() as gates:
        run = FaultRun(fault_jobs.timeout_job, instance=home, run_config=shared.run_config(
            {"stuck": gates.config(), "witness": gates.config()})).start()
        failure = run.wait_for(EventType.STEP_FAILURE, "stuck", timeout=WALL_BOUND)
        pid = gates.wait_visitor("release-stuck", EXIT_TIMEOUT)
        # killed: at once (multiprocess, Celery), or by a worker restart (Dask, plait_dask._stuck)
        assert wait_gone([pid]) == [], f"the timed-out step's process {pid} still runs"
        gates.open("witness")  # only now may the run end
        result = run.join()
        ran = len(gates.visitors("release-stuck"))
    assert run.wall < WALL_BOUND
    assert ran == 1, f"the timed-out step ran {ran} times"
    assert result.status is RunStatus.FAILURE
    assert failure.data["kind"] == "timeout"
    assert failure.message == "timeout: step 'stuck' ran past its timeout of 1s"
    start = next(e for e in result.events_for("stuck") if e.event_type is EventType.STEP_START)
    assert failure.timestamp - start.timestamp < 1.0 + 5.0, "the timeout was enforced late"
    after_failure = [str(e) for e in result.events_for("stuck") if e.seq > failure.seq]
    assert after_failure == [], "the timed-out attempt recorded more after its failure"
    assert not [e for e in result.events if "late:" in e.message]
    assert result.output_for("witness") is True
    handled = {EventType.STEP_OUTPUT, EventType.HANDLED_OUTPUT}
    assert not [e for e in result.events_for("stuck") if e.event_type in handled]
    assert home.storage_dir is not None  # killed before it could return
    assert not (home.storage_dir / result.run_id / "stuck").exists()
    check_recorded_once(result, home, ended={"stuck", "witness"})


RETRY_BOUND = 12.0
"""A timed-out attempt and its retry, on a one-slot engine, end within this many seconds."""


def test_a_timed_out_step_is_retried_on_a_freed_slot(executor: str, private: Engine,
                                                      home: Instance,
                                                      request: pytest.FixtureRequest) -> None:
    with Rendezvous() as gates:
        run = FaultRun(fault_jobs.timeout_retry_job, instance=home,
                       run_config=private.run_config({"stuck_once": gates.config()})).start()
        ended = run.ended(RETRY_BOUND)
    # leaving the rendezvous released the first attempt if it still ran: the run ends now
    result = run.join()
    assert ended, (f"the retry did not run within {RETRY_BOUND:g}s of a 1 s timeout: "
                   f"{[str(e) for e in result.events]}")
    assert result.status is RunStatus.SUCCESS
    assert result.output_for("stuck_once") == 7
    (up,) = [e for e in result.events if e.event_type is EventType.STEP_UP_FOR_RETRY]
    assert up.data["kind"] == "timeout"
    check_recorded_once(result, home, ended={"stuck_once"})


# ---- 4. cancel mid-run ------------------------------------------------------------------------------


def test_cancel_mid_run(executor: str, private: Engine, home: Instance) -> None:
    cancel = threading.Event()
    running: list[Event] = []

    def cancel_when_slow_runs(event: Event) -> None:
        # slow's first LOG: it has started and names its process
        if event.event_type is EventType.LOG and event.step_key == "slow" and not running:
            running.append(event)
            cancel.set()

    with Rendezvous() as gates:
        run = FaultRun(fault_jobs.cancel_job, instance=home, cancel=cancel,
                       hooks=[cancel_when_slow_runs],
                       run_config=private.run_config({"slow": gates.config(),
                                                      "quick": gates.config()})).start()
        result = run.join()
        pid = running[0].data["pid"]
        assert wait_gone([pid]) == [], f"the canceled step's process {pid} still runs"
        quick_ran = gates.is_open("quick-ran")
        slow_ran = len(gates.visitors("release-slow"))
    assert run.wall < WALL_BOUND
    assert result.status is RunStatus.CANCELED
    assert result.events[-1].event_type is EventType.RUN_CANCELED
    assert result.events[-1].timestamp - running[0].timestamp < 15.0, "the cancel took too long"
    slow = failure_of(result, "slow")
    assert slow.data["kind"] == "canceled"
    starts = [e.step_key for e in result.events if e.event_type is EventType.STEP_START]
    assert starts == ["slow"], "a queued step started after the cancel"
    assert result.events_for("after") == []
    # queued in the engine (Dask, Celery) it was in flight: recorded canceled; queued in the
    # coordinator (a 1-process pool takes one step at a time) it has no event at all
    assert [(e.event_type, e.data.get("kind")) for e in result.events_for("quick")] in (
        [], [(EventType.STEP_FAILURE, "canceled")])
    assert not quick_ran, "the queued step ran although the run was canceled"
    assert slow_ran <= 1, f"the canceled step ran {slow_ran} times"
    check_recorded_once(result, home, ended={"slow"})


# ---- 5. storage that disappears mid-run ---------------------------------------------------------


@pytest.mark.parametrize("what", ["objects", "bucket"])
def test_storage_that_disappears_mid_run(executor: str, shared: Engine, s3_url: Any, what: str,
                                         home: Instance) -> None:
    fs = s3_url.filesystem()
    target = s3_url.bucket if what == "bucket" else s3_url.url
    deleted: list[str] = []

    def delete_when_produced(event: Event) -> None:
        # recorded with produce's outcome, before consume is submitted
        if event.event_type is EventType.STEP_SUCCESS and event.step_key == "produce":
            fs.rm(target, recursive=True)
            deleted.append(target)

    io = {"config": {"base_url": s3_url.url, "storage_options": s3_url.storage_options}}
    run = FaultRun(fault_jobs.storage_job, instance=home, hooks=[delete_when_produced],
                   run_config=shared.run_config(resources={"io_manager": io})).start()
    result = run.join()
    assert run.wall < WALL_BOUND
    assert deleted == [target]
    assert not fs.exists(f"{s3_url.url}/{result.run_id}/produce/result")
    assert result.status is RunStatus.FAILURE
    url = f"{s3_url.url}/{result.run_id}/produce/result"
    stored = [e for e in result.events_for("produce") if e.event_type is EventType.HANDLED_OUTPUT]
    assert [e.data["location"] for e in stored] == [url]
    failure = failure_of(result, "consume")
    assert failure.data["kind"] == "error"
    assert failure.data["error_type"] == "OutputNotFoundError", failure.message
    assert f"is not stored at {url}" in failure.message
    check_recorded_once(result, home, ended={"produce", "consume"})


# ---- 6. a broker restart mid-run (Celery) ---------------------------------------------------------


def test_a_celery_broker_restart_mid_run(redis_factory: Any, worker_factory: Any,
                                         home: Instance) -> None:
    broker = redis_factory()
    queue = f"restart-{uuid.uuid4().hex[:8]}"
    worker = worker_factory(broker.db(0), broker.db(1), [queue])
    config = {"broker": broker.db(0), "backend": broker.db(1), "queue": queue, "lost_after": 3.0,
              "health_check_interval": 0.5, "worker_wait_timeout": 10.0}
    with Rendezvous() as gates:
        run = FaultRun(fault_jobs.restart_job, instance=home, run_config={
            "execution": {"celery": config}, "ops": {"held": gates.config()}}).start()
        run.wait_for(EventType.STEP_START, "held", timeout=WALL_BOUND)
        # `held` runs on the only worker, `waiting` sits in the broker: both live through this
        broker.kill()
        broker.start()
        gates.open("release-held")
        result = run.join()
    assert run.wall < WALL_BOUND
    assert result.status in (RunStatus.SUCCESS, RunStatus.FAILURE)
    failures = [e for e in result.events
                if e.event_type in (EventType.STEP_UP_FOR_RETRY, EventType.STEP_FAILURE)]
    assert {e.data["kind"] for e in failures} <= {"lost"}, [str(e) for e in failures]
    if result.success:
        assert result.output_for("combine") == 15
    assert worker.proc.poll() is None, "the worker did not survive the broker restart"
    check_recorded_once(result, home, ended={"held", "waiting", "combine"})
