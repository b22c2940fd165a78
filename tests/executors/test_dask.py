"""The Dask executor against a real LocalCluster with worker processes.

Ops that must block until the test lets them go connect to a socket the test listens on
(``_Gate``): the op sends its pid and waits; the test's ``accept`` returns once the op is
really blocked, so no test sleeps or polls to find out where a step is.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from plait import (
    Config,
    ConfigurableResource,
    DynamicOut,
    DynamicOutput,
    EventType,
    ExecutorError,
    Instance,
    RetryPolicy,
    RunStatus,
    job,
    op,
)

from tests.services._require import free_port

pytestmark = pytest.mark.services

RUN_TIMEOUT = 120.0


def dask(address: str, **settings: Any) -> dict[str, Any]:
    return {"execution": {"dask": {"address": address, **settings}}}


# ---- jobs ----------------------------------------------------------------------------


@op
def one() -> int:
    return 1


@op
def add_one(x: int) -> int:
    return x + 1


@op
def double(x: int) -> int:
    return 2 * x


@op
def plus(a: int, b: int) -> int:
    return a + b


@op
def where() -> int:
    return os.getpid()


@job
def chain():
    add_one.alias("add_one_3")(add_one.alias("add_one_2")(add_one(one())))


@job
def diamond():
    start = one()
    plus(add_one(start), double(start))


@op(out=DynamicOut(int))
def fan_out():
    for i in range(5):
        yield DynamicOutput(i, mapping_key=f"k{i}")


@op
def square(x: int) -> int:
    return x * x


@op
def total(xs: list[int]) -> int:
    return sum(xs)


@job
def mapped():
    total(fan_out().map(square).collect())


@job
def pids():
    where()


class GateConfig(Config):
    port: int
    block_attempts: int = 1
    """Attempts (from 0) that block at the gate; later ones return at once."""


@op
def gated(context, config: GateConfig) -> str:
    context.log.info("before the gate (attempt %d)", context.retry_number)
    if context.retry_number < config.block_attempts:
        with socket.create_connection(("127.0.0.1", config.port), timeout=60) as conn:
            conn.settimeout(None)
            conn.sendall(f"{os.getpid()}\n".encode())
            conn.recv(1)  # blocks until the test releases the gate (or kills this process)
    return f"passed on attempt {context.retry_number}"


@job
def gated_job():
    gated()


@op(retry_policy=RetryPolicy(max_retries=2, delay=0.0))
def gated_with_retry(context, config: GateConfig) -> str:
    return gated.fn(context, config)


@job
def gated_retry_job():
    gated_with_retry()


@op(timeout=1.0)
def gated_with_timeout(context, config: GateConfig) -> str:
    return gated.fn(context, config)


@job
def gated_timeout_job():
    gated_with_timeout()


@op(timeout=1.0, tags={"plait/priority": 5})
def hangs(context, config: GateConfig) -> str:
    return gated.fn(context, config)


@op(tags={"plait/priority": 5})
def bystander(context, config: GateConfig) -> str:
    return gated.fn(context, config)


@op
def queued_behind() -> int:
    return os.getpid()


@job
def hung_worker_job():
    """On one worker with two threads: ``hangs`` (past its timeout) and ``bystander``
    take both threads, ``queued_behind`` waits on the worker for one."""
    hangs()
    bystander()
    queued_behind()


@op
def spawns(context, config: GateConfig) -> str:
    """Starts a child process (as ops calling command-line tools do), then blocks."""
    child = subprocess.Popen([sys.executable, "-c", "import threading; threading.Event().wait(120)"])
    context.log.info("spawned a child", child=child.pid)
    try:
        return gated.fn(context, config)
    finally:
        child.kill()
        child.wait()


@job
def spawns_job():
    spawns()


@op(tags={"plait/priority": 7, "dask/resources": {"slot": 1}})
def placed() -> dict:
    from distributed import get_worker
    from distributed.worker import thread_state

    ts = get_worker().state.tasks[thread_state.key]
    return {"priority": list(ts.priority), "resources": dict(ts.resource_restrictions or {})}


@job
def placed_job():
    placed()


class _Gate:
    """A loopback socket ops connect to and block on until ``release``."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(60)
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []

    def config(self, op_name: str, **extra: Any) -> dict[str, Any]:
        return {"ops": {op_name: {"config": {"port": self.port, **extra}}}}

    def wait_blocked(self) -> int:
        """Block until an op is at the gate; its pid. Fails if the run ended first."""
        conn, _ = self.server.accept()
        self.conns.append(conn)
        conn.settimeout(30)
        line = conn.makefile().readline().strip()
        if line == "ended":
            pytest.fail("the run ended before its op reached the gate")
        return int(line)

    def run_ended(self) -> None:
        """Called by the run's thread as it ends: wakes a ``wait_blocked`` still waiting."""
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(b"ended\n")

    def release(self) -> None:
        for conn in self.conns:
            conn.close()
        self.conns.clear()

    def close(self) -> None:
        self.release()
        self.server.close()


@pytest.fixture
def gate():
    g = _Gate()
    yield g
    g.close()


def run_in_thread(fn, *args: Any, gate: _Gate | None = None,
                  **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``fn`` on a thread; its result or error lands in the returned dict."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc
        finally:
            if gate is not None:
                gate.run_ended()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def merge(*configs: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for config in configs:
        for key, value in config.items():
            merged.setdefault(key, {}).update(value)
    return merged


def assert_no_duplicate_events(result: Any) -> None:
    seen = Counter(
        (e.event_type, e.step_key, e.attempt, e.message, json.dumps(e.data, sort_keys=True, default=str))
        for e in result.events
        if e.step_key
    )
    dupes = [k for k, n in seen.items() if n > 1]
    assert not dupes, f"events recorded twice: {dupes}"


# ---- results -----------------------------------------------------------------------------


def test_chain_diamond_and_mapping_run_on_the_workers(dask_address: str, tmp_path: Path) -> None:
    instance = Instance(tmp_path / "home")
    config = dask(dask_address)
    assert chain.execute(config, instance=instance).output_for("add_one_3") == 4
    result = diamond.execute(config, instance=instance)
    assert result.output_for("plus") == 4
    assert result.events[0].data["executor"] == "dask"
    result = mapped.execute(config, instance=instance)
    assert result.output_for("total") == sum(i * i for i in range(5))
    assert sorted(k for k in result.step_status() if k.startswith("square[")) == [
        f"square[k{i}]" for i in range(5)
    ]
    assert_no_duplicate_events(result)
    worker_pid = pids.execute(config, instance=instance).output_for("where")
    assert worker_pid != os.getpid()
    from distributed import Client

    with Client(dask_address, set_as_default=False) as client:  # the run's topic was dropped
        assert client.get_events(f"plait-live-{result.run_id}") == ()


def test_two_concurrent_runs_of_one_job_share_the_cluster(dask_address: str, tmp_path: Path) -> None:
    instance = Instance(tmp_path / "home")
    runs = [run_in_thread(mapped.execute, dask(dask_address), instance=instance) for _ in range(2)]
    for thread, _ in runs:
        thread.join(RUN_TIMEOUT)
        assert not thread.is_alive(), "a run did not finish"
    results = [box.get("result") or box["error"] for _, box in runs]
    for result in results:
        assert not isinstance(result, BaseException), result
        assert result.success
        assert result.output_for("total") == 30
        assert_no_duplicate_events(result)
    assert results[0].run_id != results[1].run_id


def test_a_large_job_is_scattered_once_instead_of_sent_with_every_task(
    dask_address: str, tmp_path: Path
) -> None:
    from plait_dask.executor import SCATTER_JOB_BYTES

    blob = os.urandom(SCATTER_JOB_BYTES + 1024)  # captured by value in the job's pickle

    @op
    def size() -> int:
        return len(blob)

    @op
    def half(n: int) -> int:
        return n // 2

    @job
    def big_job():
        half(size())

    result = big_job.execute(dask(dask_address), instance=Instance(tmp_path))
    assert result.output_for("half") == len(blob) // 2


def test_priority_and_resources_come_from_op_tags(dask_cluster_factory, tmp_path: Path) -> None:
    cluster = dask_cluster_factory(n_workers=1, resources={"slot": 1})
    result = placed_job.execute(dask(cluster.scheduler_address), instance=Instance(tmp_path))
    placed_on = result.output_for("placed")
    assert placed_on["resources"] == {"slot": 1}
    assert placed_on["priority"][0] == -7  # Dask runs the highest user priority first


def test_a_bad_resources_tag_is_refused_before_the_run(dask_address: str, tmp_path: Path) -> None:
    @op(tags={"dask/resources": "GPU"})
    def bad() -> None: ...

    @job
    def bad_job():
        bad()

    with pytest.raises(ExecutorError, match="dask/resources"):
        bad_job.execute(dask(dask_address), instance=Instance(tmp_path))


class Ledger(ConfigurableResource):
    """Writes setup-<pid> and teardown-<pid> files, so a test sees where each happened."""

    folder: str

    def setup(self) -> None:
        Path(self.folder, f"setup-{os.getpid()}").touch()

    def teardown(self) -> None:
        Path(self.folder, f"teardown-{os.getpid()}").touch()


@op
def uses_ledger(ledger: Ledger) -> int:
    return os.getpid()


@job(resources={"ledger": Ledger(folder="/nonexistent")})
def ledger_job():
    uses_ledger()


def test_each_worker_tears_down_the_run_resources_it_set_up(dask_address: str, tmp_path: Path) -> None:
    config = merge(dask(dask_address), {"resources": {"ledger": {"config": {"folder": str(tmp_path)}}}})
    result = ledger_job.execute(config, instance=Instance(tmp_path / "home"))
    worker_pid = result.output_for("uses_ledger")
    assert worker_pid != os.getpid()
    made = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("setup-", "teardown-")))
    assert made == [f"setup-{worker_pid}", f"teardown-{worker_pid}"]  # torn down before execute returned


# ---- live events, cancel, timeout -----------------------------------------------------------


def test_logs_reach_the_coordinator_while_the_step_runs(dask_address: str, tmp_path: Path, gate: _Gate) -> None:
    live = threading.Event()

    def on_event(event: Any) -> None:
        if event.event_type is EventType.LOG and "before the gate" in event.message:
            live.set()

    thread, box = run_in_thread(
        gated_job.execute, merge(dask(dask_address), gate.config("gated")),
        instance=Instance(tmp_path), gate=gate, on_event=on_event,
    )
    gate.wait_blocked()
    try:
        assert live.wait(30), "the step's log line did not arrive while the step was running"
    finally:
        gate.release()
    thread.join(RUN_TIMEOUT)
    result = box["result"]
    assert result.success
    logs = [e for e in result.events_for("gated") if e.event_type is EventType.LOG]
    assert len(logs) == 1
    assert_no_duplicate_events(result)


def test_cancel_ends_the_run_canceled(dask_address: str, tmp_path: Path, gate: _Gate) -> None:
    cancel = threading.Event()
    thread, box = run_in_thread(
        gated_job.execute, merge(dask(dask_address), gate.config("gated")),
        instance=Instance(tmp_path), gate=gate, cancel=cancel, raise_on_error=False,
    )
    gate.wait_blocked()
    started = time.monotonic()
    cancel.set()
    thread.join(RUN_TIMEOUT)
    gate.release()
    assert not thread.is_alive()
    assert time.monotonic() - started < 30
    result = box["result"]
    assert result.status is RunStatus.CANCELED
    assert result.events[-1].event_type is EventType.RUN_CANCELED


def test_a_step_past_its_timeout_fails_as_timeout(dask_address: str, tmp_path: Path, gate: _Gate) -> None:
    thread, box = run_in_thread(
        gated_timeout_job.execute, merge(dask(dask_address), gate.config("gated_with_timeout")),
        instance=Instance(tmp_path), gate=gate, raise_on_error=False,
    )
    gate.wait_blocked()
    thread.join(RUN_TIMEOUT)
    gate.release()
    result = box["result"]
    assert not result.success
    failure = [e for e in result.events_for("gated_with_timeout") if e.event_type is EventType.STEP_FAILURE]
    assert [e.data["kind"] for e in failure] == ["timeout"]


# ---- worker and scheduler failures ---------------------------------------------------------


def test_a_killed_worker_fails_the_attempt_and_the_retry_runs_elsewhere(
    dask_cluster_factory, tmp_path: Path, gate: _Gate
) -> None:
    cluster = dask_cluster_factory()
    started = time.monotonic()
    thread, box = run_in_thread(
        gated_retry_job.execute,
        merge(dask(cluster.scheduler_address), gate.config("gated_with_retry")),
        instance=Instance(tmp_path), gate=gate,
    )
    pid = gate.wait_blocked()
    os.kill(pid, signal.SIGKILL)
    thread.join(RUN_TIMEOUT)
    assert not thread.is_alive(), "the run hung after its worker died"
    assert time.monotonic() - started < 60
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result.success
    assert result.output_for("gated_with_retry") == "passed on attempt 1"
    events = result.events_for("gated_with_retry")
    retry = [e for e in events if e.event_type is EventType.STEP_UP_FOR_RETRY]
    assert len(retry) == 1 and retry[0].data["kind"] in ("lost", "crash")
    assert "died" in retry[0].message
    starts = Counter(e.attempt for e in events if e.event_type is EventType.STEP_START)
    assert starts == {0: 1, 1: 1}  # Dask did not run attempt 0 again elsewhere
    assert_no_duplicate_events(result)


def test_a_killed_worker_without_retry_policy_fails_the_step_as_lost(
    dask_cluster_factory, tmp_path: Path, gate: _Gate
) -> None:
    cluster = dask_cluster_factory()
    thread, box = run_in_thread(
        gated_job.execute, merge(dask(cluster.scheduler_address), gate.config("gated")),
        instance=Instance(tmp_path), gate=gate, raise_on_error=False,
    )
    pid = gate.wait_blocked()
    os.kill(pid, signal.SIGKILL)
    thread.join(RUN_TIMEOUT)
    assert not thread.is_alive(), "the run hung after its worker died"
    result = box["result"]
    assert result.status is RunStatus.FAILURE
    failure = [e for e in result.events_for("gated") if e.event_type is EventType.STEP_FAILURE]
    assert len(failure) == 1
    assert failure[0].data["kind"] == "lost"
    assert failure[0].message.startswith("lost: Dask worker tcp://127.0.0.1:"), failure[0].message
    assert f"worker process {pid} died with signal SIGKILL" in failure[0].message  # from the nanny
    assert "while running step 'gated' (attempt 1)" in failure[0].message


def test_a_killed_worker_of_dask_worker_cli_takes_what_its_step_started_along(
    dask_nanny_cluster, tmp_path: Path, gate: _Gate
) -> None:
    """On a cluster plait did not start (``dask worker`` with its nanny), plait's plugins,
    registered by the client, kill a dead worker's process group and report its exit."""
    import psutil

    children: list[int] = []
    logged = threading.Event()

    def on_event(event: Any) -> None:
        if event.event_type is EventType.LOG and "child" in event.data:
            children.append(event.data["child"])
            logged.set()

    thread, box = run_in_thread(
        spawns_job.execute, merge(dask(dask_nanny_cluster.address, ship_code=True),
                                  gate.config("spawns")),
        instance=Instance(tmp_path), gate=gate, raise_on_error=False, on_event=on_event,
    )
    pid = gate.wait_blocked()
    assert logged.wait(30), "the step's log line with its child's pid did not arrive"
    try:
        os.kill(pid, signal.SIGKILL)
        thread.join(RUN_TIMEOUT)
        assert not thread.is_alive(), "the run hung after its worker died"
        (failure,) = [e for e in box["result"].events_for("spawns")
                      if e.event_type is EventType.STEP_FAILURE]
        assert failure.data["kind"] == "lost"
        assert f"worker process {pid} died with signal SIGKILL" in failure.message, failure.message
        child = psutil.Process(children[0]) if psutil.pid_exists(children[0]) else None
        _, alive = psutil.wait_procs([child] if child else [], timeout=15)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], (
            "the step's child process outlived its killed worker")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(children[0], signal.SIGKILL)


def test_a_worker_whose_canceled_step_hangs_is_restarted(
    dask_cluster_factory, tmp_path: Path, gate: _Gate
) -> None:
    """Dask cannot stop the thread of a step past its timeout: plait restarts its worker.
    The step running beside it dies with the worker (lost, the message says why); the one
    waiting on that worker for a thread never started, so it runs on the new worker."""
    cluster = dask_cluster_factory(n_workers=1, threads_per_worker=2)
    ops = merge(gate.config("hangs"), gate.config("bystander"))
    thread, box = run_in_thread(
        hung_worker_job.execute, merge(dask(cluster.scheduler_address), ops),
        instance=Instance(tmp_path), gate=gate, raise_on_error=False,
    )
    pid = gate.wait_blocked()
    assert gate.wait_blocked() == pid  # both on the one worker process
    thread.join(RUN_TIMEOUT)
    assert not thread.is_alive(), "the run hung behind its timed-out step"
    result = box["result"]
    assert [e.data["kind"] for e in result.events_for("hangs")
            if e.event_type is EventType.STEP_FAILURE] == ["timeout"]
    (lost,) = [e for e in result.events_for("bystander") if e.event_type is EventType.STEP_FAILURE]
    assert lost.data["kind"] == "lost"
    assert (f"worker process {pid} died with signal SIGKILL: plait restarted the worker to stop "
            "step 'hangs' (attempt 1)") in lost.message, lost.message
    assert result.output_for("queued_behind") not in (pid, None)
    starts = [e for e in result.events_for("queued_behind") if e.event_type is EventType.STEP_START]
    assert [e.attempt for e in starts] == [0]  # moved, not failed: it had not started
    import psutil

    _, alive = psutil.wait_procs([psutil.Process(pid)] if psutil.pid_exists(pid) else [], timeout=15)
    assert not alive, "the restarted worker process is still running"
    assert_no_duplicate_events(result)


def test_a_canceled_step_on_a_worker_without_nanny_is_left_running_with_a_warning(
    dask_process_cluster, tmp_path: Path, gate: _Gate, caplog: pytest.LogCaptureFixture
) -> None:
    from plait_dask import DaskExecutor

    warned = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "no nanny" in record.getMessage():
                warned.set()

    watch = Watch(level=logging.WARNING)
    logging.getLogger("plait_dask").addHandler(watch)
    try:
        with DaskExecutor(address=dask_process_cluster.address, ship_code=True) as executor:
            thread, box = run_in_thread(
                gated_timeout_job.execute, gate.config("gated_with_timeout"), executor=executor,
                instance=Instance(tmp_path), gate=gate, raise_on_error=False,
            )
            pid = gate.wait_blocked()
            thread.join(RUN_TIMEOUT)
            assert box["result"].status is RunStatus.FAILURE
            assert warned.wait(30), "no warning that the canceled step still runs"
        assert pid == dask_process_cluster.worker.pid
        assert dask_process_cluster.worker.poll() is None, "the worker without nanny was stopped"
    finally:
        logging.getLogger("plait_dask").removeHandler(watch)
    assert "step 'gated_with_timeout' (attempt 1) of run" in caplog.text
    assert "has no nanny to restart it" in caplog.text


def test_restarting_stuck_workers_is_set_in_the_workers_dask_config() -> None:
    import dask
    from plait_dask._stuck import RESTART_AFTER_CONFIG, RESTART_AFTER_SECONDS, restart_after_seconds

    assert restart_after_seconds() == RESTART_AFTER_SECONDS
    for off in (False, None, "false", "off"):  # YAML false, or the env var's text
        with dask.config.set({RESTART_AFTER_CONFIG: off}):
            assert restart_after_seconds() is None, off
    with dask.config.set({RESTART_AFTER_CONFIG: "10"}):
        assert restart_after_seconds() == 10.0


def test_a_scheduler_that_goes_away_fails_the_run_with_its_address(
    dask_process_cluster, tmp_path: Path, gate: _Gate
) -> None:
    address = dask_process_cluster.address
    thread, box = run_in_thread(
        gated_job.execute,
        merge(dask(address, connect_timeout=2, ship_code=True), gate.config("gated")),
        instance=Instance(tmp_path), gate=gate,
    )
    gate.wait_blocked()
    started = time.monotonic()
    dask_process_cluster.scheduler.kill()
    thread.join(RUN_TIMEOUT)
    assert not thread.is_alive(), "the run hung after the scheduler went away"
    assert time.monotonic() - started < 30
    error = box.get("error")
    assert isinstance(error, ExecutorError), box
    assert address in str(error)


def test_an_unreachable_scheduler_is_reported_at_once(tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ExecutorError) as info:
        chain.execute(dask(address, connect_timeout=1), instance=Instance(tmp_path))
    assert time.monotonic() - started < 10
    assert address in str(info.value)
    assert "dask scheduler" in str(info.value)


# ---- code shipping, config, imports -----------------------------------------------------------

SHIPPED_MODULE = '''
from plait import Config, job, op


class Offset(Config):
    by: int = 22


def helper(x: int, offset: Offset) -> int:
    return x + offset.by


@op
def base() -> int:
    return 20


@op
def shipped(x: int, config: Offset) -> int:
    return helper(x, config)


@job
def shipped_job():
    shipped(base())
'''
"""Op functions travel by value anyway (their module attribute is the OpDefinition), but
the classes and helpers they use are pickled by reference to their module."""


def _import_by_path(tmp_path: Path) -> Any:
    """A module no worker can import: its file is not on any sys.path."""
    name = f"jobs_{uuid.uuid4().hex}"
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(SHIPPED_MODULE))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_ship_code_runs_a_job_workers_cannot_import(dask_address: str, tmp_path: Path) -> None:
    module = _import_by_path(tmp_path)
    try:
        without = module.shipped_job.execute(
            dask(dask_address), instance=Instance(tmp_path / "a"), raise_on_error=False
        )
        assert not without.success
        assert "No module named" in without.events_for("base")[-1].message, without.events
        result = module.shipped_job.execute(
            dask(dask_address, ship_code=True), instance=Instance(tmp_path / "b")
        )
        assert result.output_for("shipped") == 42
    finally:
        del sys.modules[module.__name__]


def test_address_and_local_cluster_settings_are_exclusive(tmp_path: Path) -> None:
    from plait import RunConfigError

    with pytest.raises((RunConfigError, ExecutorError), match="n_workers"):
        chain.execute(dask("tcp://127.0.0.1:1", n_workers=2), instance=Instance(tmp_path))


LOCAL_CLUSTER_SCRIPT = """
import sys

import psutil
from plait import Instance, job, op


@op
def one() -> int:
    return 1


@job
def local_job():
    one()


if __name__ == "__main__":
    config = {"execution": {"dask": {"n_workers": 1, "threads_per_worker": 1}}}
    assert local_job.execute(config, instance=Instance(sys.argv[1])).output_for("one") == 1
    left = [p for p in psutil.Process().children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())]
    _, alive = psutil.wait_procs(left, timeout=20)
    assert not alive, f"the LocalCluster left processes behind: {alive}"
"""


def test_plait_starts_and_stops_a_local_cluster(tmp_path: Path) -> None:
    # In a process of its own: an in-process LocalCluster leaves Dask's offload thread
    # behind, which would keep later tests from forking.
    script = tmp_path / "local_cluster.py"
    script.write_text(LOCAL_CLUSTER_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "home")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_importing_plait_or_plait_dask_does_not_import_dask() -> None:
    code = (
        "import sys, plait; assert 'dask' not in sys.modules and 'distributed' not in sys.modules\n"
        "from plait.executors.registry import get_executor_class\n"
        "import plait_dask; assert get_executor_class('dask') is plait_dask.DaskExecutor\n"
        "assert 'distributed' not in sys.modules, 'plait_dask imported distributed'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
