"""The multiprocess executor with real worker processes: results, concurrency, live logs,
warm reuse, crashes (SIGKILL, exit code, segfault), timeouts, cancel, config errors.

Ops in worker processes cannot wait on a test's threading.Event, so they block on a
``Gate``: a loopback socket the test opens (from the ``on_event`` callback) once it has
seen what it waits for. Every block has a timeout, so a broken executor fails the test
instead of hanging it. After each test no process started by it may be left.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from plait import (
    ConfigurableResource,
    DynamicOut,
    DynamicOutput,
    EventType,
    ExecutorError,
    Instance,
    RetryPolicy,
    RunConfigError,
    RunStatus,
    job,
    load_job,
    op,
)
from plait.executors.multiprocess import MultiprocessExecutor

BLOCK_SECONDS = 30  # an op blocks at most this long: a broken executor fails, never hangs


# ---- helpers --------------------------------------------------------------------------


class Gate:
    """A loopback socket ops block on (``pass_gate``) until the test opens it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(BLOCK_SECONDS)
        self.port = self.server.getsockname()[1]

    def open(self, passes: int = 1) -> None:
        """Let ``passes`` ops through (each connects once)."""
        for _ in range(passes):
            conn, _ = self.server.accept()
            with conn:
                conn.sendall(b"go")

    def close(self) -> None:
        self.server.close()


def pass_gate(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=BLOCK_SECONDS) as conn:
        if conn.recv(2) != b"go":
            raise RuntimeError("the gate closed before it opened")


def block() -> None:
    """Block until the worker is killed or terminated (bounded)."""
    threading.Event().wait(BLOCK_SECONDS)
    raise RuntimeError(f"still running after {BLOCK_SECONDS}s: nobody killed this worker")


def gone(pid: int) -> bool:
    """The process no longer runs (a zombie left to a non-reaping init counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def failure_of(result, step_key: str):
    (event,) = [e for e in result.events
                if e.event_type is EventType.STEP_FAILURE and e.step_key == step_key]
    return event


def _is_mp_helper(proc: psutil.Process) -> bool:
    """multiprocessing's own long-lived helpers (resource tracker, fork server)."""
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return "multiprocessing.resource_tracker" in cmdline or "multiprocessing.forkserver" in cmdline


def _live_children() -> set[int]:
    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and not _is_mp_helper(proc):
                found.add(proc.pid)
        except psutil.NoSuchProcess:
            continue
    return found


_shared_pools: list[MultiprocessExecutor] = []


@pytest.fixture(autouse=True)
def no_orphans() -> Iterator[None]:
    """Whatever a test started (workers, processes its ops started) is gone after it,
    except the workers of the shared warm pool (which replaces those that crash)."""
    before = _live_children()
    yield
    left = _live_children() - before - {pid for p in _shared_pools for pid in p.worker_pids}
    still = [pid for pid in left if not gone(pid)]
    assert not still, f"processes left running: {still}"


@pytest.fixture
def home(tmp_path) -> Instance:
    return Instance(tmp_path / "home")


@pytest.fixture(scope="module")
def warm() -> Iterator[MultiprocessExecutor]:
    """One warm pool for the tests that need no pool of their own (it outlives crashes)."""
    with MultiprocessExecutor(max_concurrent=2) as executor:
        _shared_pools.append(executor)
        yield executor
        _shared_pools.remove(executor)


# ---- jobs at module level (workers import them by reference) -------------------------


@op
def numbers() -> list[int]:
    return [1, 2, 3]


@op
def total(xs: list[int]) -> int:
    return sum(xs)


@op
def double(x: int) -> int:
    return 2 * x


@op
def add(x: int, y: int) -> int:
    return x + y


@op
def plus_one(x: int) -> int:
    return x + 1


@op
def combine(values: list[int]) -> int:
    return sum(values)


@job
def chain_and_fan():
    t = total(numbers())  # 6
    left = double.alias("left")(t)  # 12
    right = plus_one.alias("right")(t)  # 7
    mid = add(left, right)  # 19
    combine([left, right, mid])  # 38


@op(out=DynamicOut(int))
def fan_out():
    for i in range(5):
        yield DynamicOutput(i, mapping_key=f"k{i}")


@op
def square(x: int) -> int:
    return x * x


@op
def gather(values: list[int]) -> int:
    return sum(values)


@job
def mapped():
    gather(fan_out().map(square).collect())


@op
def whoami() -> int:
    return os.getpid()


@job
def pids():
    for i in range(4):
        whoami.alias(f"who_{i}")()


@op
def preloaded() -> bool:
    return "colorsys" in sys.modules


@job
def preload_job():
    preloaded()


# ---- results --------------------------------------------------------------------------


def test_a_chain_with_fan_out_and_fan_in_gives_the_in_process_results(home, warm):
    result = chain_and_fan.execute(instance=home, executor=warm)
    assert result.success
    assert result.output_for("total") == 6
    assert result.output_for("combine") == 38
    reference = chain_and_fan.execute(instance=Instance.ephemeral())
    assert [result.output_for(k) for k in ("left", "right", "add")] == [
        reference.output_for(k) for k in ("left", "right", "add")
    ]


def test_dynamic_mapping_runs_each_mapped_step_on_the_pool(home, warm):
    result = mapped.execute(instance=home, executor=warm)
    assert result.success
    assert result.output_for("gather") == sum(i * i for i in range(5))
    assert result.output_for("square")["k3"] == 9


def test_the_executor_is_chosen_by_name_and_configured_in_run_config(home):
    result = chain_and_fan.execute(
        instance=home,
        run_config={"execution": {"multiprocess": {"max_concurrent": 1}}},
    )
    assert result.success
    assert result.events[0].data["executor"] == "multiprocess"
    assert result.output_for("combine") == 38


def test_two_steps_that_wait_for_each_other_finish_only_when_they_run_concurrently(home):
    """Each step blocks at the gate, which opens only once both are at it: the run can
    succeed only if two workers run them at the same time."""
    gate = Gate()
    port = gate.port

    @op
    def a(context) -> str:
        context.log.info("at the gate")
        pass_gate(port)
        return "a"

    @op
    def b(context) -> str:
        context.log.info("at the gate")
        pass_gate(port)
        return "b"

    @job
    def both():
        a()
        b()

    waiting: set[str] = set()

    def on_event(event):
        if event.event_type is EventType.LOG and event.message == "at the gate":
            waiting.add(event.step_key)
            if waiting == {"a", "b"}:
                gate.open(passes=2)

    try:
        result = both.execute(instance=home, executor=MultiprocessExecutor(max_concurrent=2),
                              on_event=on_event)
    finally:
        gate.close()
    assert result.success
    assert waiting == {"a", "b"}


def test_a_log_line_reaches_the_event_log_while_its_step_still_runs(home, warm):
    """The op logs, then blocks until the test has seen that LOG event: it can only
    finish if the log line was delivered live, with its step key."""
    gate = Gate()
    port = gate.port

    @op
    def talker(context) -> str:
        context.log.info("waiting for the test", detail=7)
        pass_gate(port)
        return "done"

    @job
    def talk():
        talker()

    seen = []

    def on_event(event):
        if event.event_type is EventType.LOG and event.message == "waiting for the test":
            seen.append(event)
            gate.open()

    try:
        result = talk.execute(instance=home, executor=warm, on_event=on_event)
    finally:
        gate.close()
    assert result.success
    (log_event,) = seen
    assert log_event.step_key == "talker" and log_event.data == {"detail": 7}
    # recorded once, although it arrived live and again with the step's outcome
    assert [e.message for e in result.events_for("talker") if e.event_type is EventType.LOG] == [
        "waiting for the test"
    ]


def test_warm_workers_serve_several_runs(home):
    with MultiprocessExecutor(max_concurrent=2) as executor:
        pool = set(executor.worker_pids)
        first = pids.execute(instance=home, executor=executor)
        second = pids.execute(instance=home, executor=executor)
        assert set(executor.worker_pids) == pool
    used_first = {first.output_for(f"who_{i}") for i in range(4)}
    used_second = {second.output_for(f"who_{i}") for i in range(4)}
    assert used_first <= pool and used_second <= pool
    assert os.getpid() not in pool
    assert all(gone(pid) for pid in pool)


JOB_FILE = """
from plait import Config, job, op


class Scale(Config):
    factor: int = 3


def double(x: int) -> int:
    return 2 * x


@op
def make() -> int:
    return double(2)


@op
def scale(config: Scale, x: int) -> int:
    return x * config.factor


@job
def scaled():
    scale(make())
"""


def test_a_job_loaded_from_a_file_runs_with_its_config_classes_and_helpers(home, warm, tmp_path):
    # `plait run jobs.py` imports the file under a made-up module name no worker can
    # import: its Config classes and helpers must travel as code with the job
    path = tmp_path / "file_jobs.py"
    path.write_text(JOB_FILE)
    scaled = load_job(f"{path}:scaled")
    result = scaled.execute({"ops": {"scale": {"config": {"factor": 5}}}}, instance=home,
                            executor=warm)
    assert result.success, [str(e) for e in result.events]
    assert result.output_for("scale") == 20


def test_preload_modules_are_imported_in_each_worker(home):
    plain = preload_job.execute(instance=home, executor=MultiprocessExecutor(max_concurrent=1))
    assert plain.output_for("preloaded") is False
    preloaded_run = preload_job.execute(
        instance=home,
        run_config={"execution": {"multiprocess": {"max_concurrent": 1, "preload_modules": ["colorsys"]}}},
    )
    assert preloaded_run.output_for("preloaded") is True


def test_a_preload_module_that_fails_to_import_stops_the_run_before_any_step(home):
    with pytest.raises(ExecutorError) as info:
        preload_job.execute(
            instance=home,
            executor=MultiprocessExecutor(max_concurrent=2, preload_modules=["no_such_module_xyz"]),
        )
    assert "could not start its workers" in str(info.value)
    assert "no_such_module_xyz" in str(info.value)


def test_forkserver_runs_the_same_job(home):
    result = chain_and_fan.execute(
        instance=home, executor=MultiprocessExecutor(max_concurrent=2, start_method="forkserver")
    )
    assert result.output_for("combine") == 38


def test_fork_runs_the_same_job_in_a_process_without_other_threads(tmp_path):
    """fork is only safe (and only allowed) with no other threads; the pytest process may
    have some (fsspec's IO loop, engine clients), so the run happens in a fresh process."""
    code = (
        "import sys; sys.path.insert(0, {!r})\n"
        "from plait import Instance\n"
        "from plait.executors.multiprocess import MultiprocessExecutor\n"
        "from tests.executors.test_multiprocess import chain_and_fan\n"
        "result = chain_and_fan.execute(instance=Instance({!r}),\n"
        "    executor=MultiprocessExecutor(max_concurrent=2, start_method='fork'))\n"
        "print('combine', result.output_for('combine'))\n"
    ).format(str(Path(__file__).resolve().parents[2]), str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "combine 38" in proc.stdout


def test_fork_is_refused_while_other_threads_run(home):
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, args=(BLOCK_SECONDS,), name="busy-helper")
    thread.start()
    try:
        with pytest.raises(ExecutorError) as info:
            chain_and_fan.execute(instance=home,
                                  executor=MultiprocessExecutor(max_concurrent=1, start_method="fork"))
    finally:
        stop.set()
        thread.join()
    assert "busy-helper" in str(info.value) and "'spawn'" in str(info.value)


# ---- refused before any step ----------------------------------------------------------


def test_a_job_that_does_not_pickle_is_refused_naming_the_op(home):
    lock = threading.Lock()

    @op
    def guarded() -> int:
        with lock:
            return 1

    @job
    def locked():
        guarded()

    with pytest.raises(ExecutorError) as info:
        locked.execute(instance=home, executor="multiprocess")
    assert "op 'guarded'" in str(info.value)
    assert home.storage.list_runs() == []  # refused before the run was even recorded


def test_an_in_memory_io_manager_is_refused(home):
    with pytest.raises(ExecutorError) as info:
        chain_and_fan.execute(instance=Instance.ephemeral(), executor="multiprocess")
    assert "FsspecIOManager" in str(info.value)


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"max_concurrent": 0}, "execution.multiprocess.max_concurrent"),
        ({"start_method": "thread"}, "execution.multiprocess.start_method"),
        ({"max_workers": 2}, "execution.multiprocess.max_workers"),
    ],
)
def test_bad_executor_config_is_reported_with_its_path(home, config, path):
    with pytest.raises(RunConfigError) as info:
        chain_and_fan.execute(instance=home, run_config={"execution": {"multiprocess": config}})
    assert any(line.startswith(path + ":") for line in info.value.errors), info.value.errors


# ---- crashes ----------------------------------------------------------------------------


def _kill_on_pid_log(signum: int, attempt: int | None = None):
    """An on_event callback: when a step logs its pid (``pid=...``), signal that process."""
    killed: list[int] = []

    def on_event(event):
        pid = event.data.get("pid") if event.event_type is EventType.LOG else None
        if pid and (attempt is None or event.attempt == attempt):
            os.kill(pid, signum)
            killed.append(pid)

    return on_event, killed


@op
def victim(context) -> int:
    context.log.info("running", pid=os.getpid())
    if context.retry_number == 0:
        block()
    return 42


@op
def bystander() -> str:
    return "fine"


@job
def crashing():
    victim()
    bystander()


@job(retry_policy=RetryPolicy(max_retries=1))
def crashing_with_retry():
    victim()


def test_a_worker_killed_with_sigkill_fails_its_step_with_kind_crash(home, warm):
    on_event, killed = _kill_on_pid_log(signal.SIGKILL)
    result = crashing.execute(instance=home, executor=warm, on_event=on_event, raise_on_error=False)
    assert result.status is RunStatus.FAILURE
    failure = failure_of(result, "victim")
    assert failure.data["kind"] == "crash"
    assert failure.message == (
        f"crash: worker process {killed[0]} died with signal SIGKILL (sent by another process "
        "or by the kernel's OOM killer when memory runs out) while running step 'victim'"
    )
    assert result.output_for("bystander") == "fine"
    assert killed[0] not in warm.worker_pids and len(warm.worker_pids) == 2


def test_a_crashed_step_is_retried_by_its_retry_policy_on_a_new_worker(home):
    on_event, killed = _kill_on_pid_log(signal.SIGKILL, attempt=0)
    result = crashing_with_retry.execute(instance=home, executor=MultiprocessExecutor(max_concurrent=1),
                                         on_event=on_event)
    assert result.success and result.output_for("victim") == 42
    (retry,) = [e for e in result.events if e.event_type is EventType.STEP_UP_FOR_RETRY]
    assert retry.data["kind"] == "crash" and "SIGKILL" in retry.message
    second_pid = [e.data["pid"] for e in result.events_for("victim") if e.event_type is EventType.LOG][1]
    assert second_pid != killed[0]


def test_os_exit_fails_the_step_with_its_exit_code(home, warm):
    @op
    def quitter() -> int:
        os._exit(3)

    @job
    def quits():
        quitter()

    result = quits.execute(instance=home, executor=warm, raise_on_error=False)
    failure = failure_of(result, "quitter")
    assert failure.data["kind"] == "crash"
    assert "exited with code 3 while running step 'quitter'" in failure.message


def test_a_segfault_fails_the_step_with_sigsegv_and_the_python_stack(home, warm):
    @op
    def segfaulter() -> int:
        ctypes.string_at(0)
        return 1

    @job
    def segfaults():
        segfaulter()

    result = segfaults.execute(instance=home, executor=warm, raise_on_error=False)
    failure = failure_of(result, "segfaulter")
    assert failure.data["kind"] == "crash"
    assert "died with signal SIGSEGV" in failure.message
    assert "Segmentation fault" in failure.data["stack"]
    assert "segfaulter" in failure.data["stack"]  # the op's frame, from faulthandler


def test_the_pool_is_rebuilt_after_a_crash_and_later_steps_still_run(home):
    @op(tags={"plait/priority": 10})
    def first_to_die() -> int:
        os._exit(3)

    @job
    def crash_then_more():
        first_to_die()
        for i in range(3):
            plus_one.alias(f"later_{i}")(whoami.alias(f"where_{i}")())

    with MultiprocessExecutor(max_concurrent=1) as executor:
        (original,) = executor.worker_pids
        result = crash_then_more.execute(instance=home, executor=executor, raise_on_error=False)
        assert len(executor.worker_pids) == 1 and executor.worker_pids != [original]
        again = pids.execute(instance=home, executor=executor)
        assert again.success
    assert failure_of(result, "first_to_die").data["kind"] == "crash"
    assert all(result.output_for(f"later_{i}") > 0 for i in range(3))
    assert {result.output_for(f"where_{i}") for i in range(3)} != {original}


# ---- timeouts and cancel ----------------------------------------------------------------


def test_a_step_past_its_timeout_fails_with_kind_timeout_and_its_worker_is_killed(home):
    @op(timeout=1)
    def sleeper(context) -> int:
        context.log.info("sleeping", pid=os.getpid())
        block()
        return 1

    @job
    def sleeps():
        sleeper()
        bystander()

    seen: list[int] = []

    def on_event(event):
        if event.event_type is EventType.LOG and "pid" in event.data:
            seen.append(event.data["pid"])

    # the workers import this module up front, so the step's first second is not spent on it
    with MultiprocessExecutor(max_concurrent=2, preload_modules=[__name__]) as executor:
        result = sleeps.execute(instance=home, executor=executor, on_event=on_event,
                                raise_on_error=False)
        # the run has ended and the executor is still open: the timed-out worker is gone
        assert gone(seen[0])
        assert seen[0] not in executor.worker_pids and len(executor.worker_pids) == 2
    failure = failure_of(result, "sleeper")
    assert failure.data["kind"] == "timeout"
    assert result.output_for("bystander") == "fine"


def test_canceling_a_run_terminates_its_steps_and_what_they_started(home):
    @op
    def spawner(context) -> int:
        child = subprocess.Popen([sys.executable, "-c", f"import threading; threading.Event().wait({BLOCK_SECONDS})"])
        context.log.info("started a child", pid=os.getpid(), child=child.pid)
        block()
        return 1

    @job
    def cancelable():
        spawner()

    cancel = threading.Event()
    started: list[dict] = []

    def on_event(event):
        if event.event_type is EventType.LOG and "child" in event.data:
            started.append(event.data)
            cancel.set()

    result = cancelable.execute(instance=home, executor=MultiprocessExecutor(max_concurrent=2),
                                cancel=cancel, on_event=on_event, raise_on_error=False)
    assert result.status is RunStatus.CANCELED
    assert result.events[-1].event_type is EventType.RUN_CANCELED
    assert failure_of(result, "spawner").data["kind"] == "canceled"
    (data,) = started
    assert gone(data["pid"])
    assert gone(data["child"])  # the op's own child went with its worker


# ---- lifecycle -----------------------------------------------------------------------------


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Block until each process has exited (pidfd: no polling); return those still running."""
    running = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if not select.select([fd], [], [], timeout)[0]:
                running.append(pid)
        finally:
            os.close(fd)
    return running


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open (Linux 5.3+)")
@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_idle_workers_exit_when_their_coordinator_is_killed(method, tmp_path):
    code = (
        "import threading\n"
        "from plait.executors.multiprocess import MultiprocessExecutor\n"
        f"executor = MultiprocessExecutor(max_concurrent=2, start_method={method!r})\n"
        "executor.__enter__()\n"
        "print(*executor.worker_pids, flush=True)\n"
        f"threading.Event().wait({BLOCK_SECONDS})\n"
    )
    # a killed coordinator cannot remove its temp dir: let it make that under tmp_path
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    coordinator = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                   env=env)
    try:
        ready, _, _ = select.select([coordinator.stdout], [], [], BLOCK_SECONDS)
        assert ready, "the coordinator did not start its workers"
        workers = [int(pid) for pid in coordinator.stdout.readline().split()]
        assert len(workers) == 2
    finally:
        coordinator.kill()
        coordinator.wait(BLOCK_SECONDS)
        coordinator.stdout.close()
    assert _wait_gone(workers, timeout=10) == []


class PickyError(Exception):
    """Pickles, but does not unpickle (its __init__ wants two arguments)."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(f"{code}: {why}")


def test_an_exception_that_does_not_unpickle_still_fails_its_step_with_the_message(home, warm):
    @op
    def picky() -> int:
        raise PickyError(7, "nope")

    @job
    def raises():
        picky()

    result = raises.execute(instance=home, executor=warm, raise_on_error=False)
    failure = failure_of(result, "picky")
    assert failure.data["kind"] == "error"
    assert failure.message == "error: PickyError: 7: nope"
    assert "PickyError" in failure.data["stack"]


SIGINT_SCRIPT = """
import os, sys, threading
from plait import EventType, Instance, job, op

@op
def stuck(context) -> int:
    context.log.info("stuck", pid=os.getpid())
    threading.Event().wait({block})
    return 1

@job
def j():
    stuck()

def on_event(event):
    if event.event_type is EventType.LOG:
        print("worker", event.data["pid"], flush=True)

if __name__ == "__main__":
    result = j.execute(instance=Instance(sys.argv[1]), executor="multiprocess",
                       on_event=on_event, raise_on_error=False)
    print("status", result.status.value, flush=True)
"""


def test_sigint_to_the_coordinator_cancels_the_run_and_stops_its_workers(tmp_path):
    script = tmp_path / "interrupted.py"
    script.write_text(SIGINT_SCRIPT.format(block=BLOCK_SECONDS))
    coordinator = subprocess.Popen([sys.executable, str(script), str(tmp_path / "home")],
                                   stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([coordinator.stdout], [], [], BLOCK_SECONDS)
        assert ready, "the step never started"
        worker = int(coordinator.stdout.readline().split()[1])
        coordinator.send_signal(signal.SIGINT)
        out, _ = coordinator.communicate(timeout=BLOCK_SECONDS)
    finally:
        coordinator.kill()
        coordinator.wait(BLOCK_SECONDS)
    assert "status CANCELED" in out
    assert gone(worker)


class Journal(ConfigurableResource):
    """Writes a line to ``path`` when torn down (in the worker that set it up)."""

    path: str

    def teardown(self) -> None:
        with open(self.path, "a") as f:
            f.write(f"teardown in {os.getpid()}\n")


def test_a_terminated_step_unwinds_and_its_worker_tears_the_run_resources_down(home, tmp_path):
    journal = tmp_path / "journal.txt"

    @op(timeout=1)
    def holds(context, journal: Journal) -> int:
        context.log.info("holding", pid=os.getpid())
        try:
            block()
        finally:
            with open(journal.path, "a") as f:
                f.write("finally ran\n")
        return 1

    @job(resources={"journal": Journal(path=str(journal))})
    def holding():
        holds()

    result = holding.execute(
        instance=home,
        executor=MultiprocessExecutor(max_concurrent=1, preload_modules=[__name__]),
        raise_on_error=False,
    )
    assert failure_of(result, "holds").data["kind"] == "timeout"
    pid = next(e.data["pid"] for e in result.events if e.event_type is EventType.LOG)
    assert journal.read_text().splitlines() == ["finally ran", f"teardown in {pid}"]


def test_an_executor_refuses_a_second_run_while_it_serves_one(home):
    gate = Gate()
    port = gate.port

    @op
    def waits(context) -> int:
        context.log.info("in")
        pass_gate(port)
        return 1

    @job
    def first():
        waits()

    refused: list[ExecutorError] = []
    with MultiprocessExecutor(max_concurrent=2) as executor:

        def on_event(event):
            if event.event_type is EventType.LOG and event.message == "in":
                try:
                    pids.execute(instance=home, executor=executor)
                except ExecutorError as exc:
                    refused.append(exc)
                gate.open()

        try:
            result = first.execute(instance=home, executor=executor, on_event=on_event)
        finally:
            gate.close()
        assert pids.execute(instance=home, executor=executor).success  # once it is done: fine
    assert result.success
    (error,) = refused
    assert "one run at a time" in str(error)


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_an_unguarded_script_runs_on_the_pool_without_re_running_in_workers(tmp_path, start_method):
    """Workers never import the user's main script, so no `if __name__ == "__main__":`
    guard is needed (the job reaches them by cloudpickle)."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "from plait import Instance, job, op\n"
        "print('script body ran', flush=True)\n"
        "@op\n"
        "def one() -> int:\n"
        "    return 1\n"
        "@op\n"
        "def plus(x: int) -> int:\n"
        "    return x + 1\n"
        "@job\n"
        "def small():\n"
        "    plus(one())\n"
        "result = small.execute(instance=Instance('home'), run_config={'execution': {'multiprocess':"
        f" {{'max_concurrent': 2, 'start_method': '{start_method}'}}}}}})\n"
        "print('output', result.output_for('plus'), flush=True)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("script body ran") == 1, proc.stdout
    assert "output 2" in proc.stdout
