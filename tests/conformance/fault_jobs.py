"""The jobs of the fault suite (tests/conformance/test_faults.py).

They live at module level in an importable module: multiprocess and Dask workers unpickle
them by reference, Celery workers import them by code pointer
(``tests.conformance.fault_jobs:<job>``; the test workers run in the repository with it on
``PYTHONPATH``, see tests/services/celery_workers.py). Only the standard library, plait and
plait_io are imported here.

Ops that must block until the test lets them go wait at a named gate of the test's
``Rendezvous`` (tests/conformance/_faults.py), a loopback socket whose port comes through
op config (``GateConfig``): ``wait_at`` sends ``WAIT <name> <pid>`` and blocks on the
reply, ``open_gate`` sends ``OPEN <name> <pid>``; the test learns from the pid which
process came (and is blocked) where. Every wait has a deadline, so a broken executor fails
a test instead of hanging it. Ops also log their pid (``pid=``), for the run's record.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

from plait import Config, ConfigurableResource, RetryPolicy, job, op
from plait_io import FsspecIOManager, InputContext, IOManager, OutputContext, StoredOutput
from pydantic import Field, PrivateAttr, model_validator

BLOCK_SECONDS = 30.0
"""The longest an op waits at a gate: far beyond any test's need, well under its timeout."""


class GateConfig(Config):
    """Where the test's rendezvous listens."""

    port: int
    block_s: float = BLOCK_SECONDS


def wait_at(config: GateConfig, gate: str) -> bool:
    """Block until the test opens ``gate`` (True), or closes the rendezvous or the deadline
    passes (False)."""
    try:
        with socket.create_connection(("127.0.0.1", config.port), timeout=config.block_s) as conn:
            conn.sendall(f"WAIT {gate} {os.getpid()}\n".encode())
            with conn.makefile("rb") as reply:
                return reply.readline().strip() == b"GO"
    except OSError:  # refused, reset or timed out: the gate never opened
        return False


def open_gate(config: GateConfig, gate: str) -> None:
    """Open ``gate`` (tell the test something happened, or release another op)."""
    with socket.create_connection(("127.0.0.1", config.port), timeout=config.block_s) as conn:
        conn.sendall(f"OPEN {gate} {os.getpid()}\n".encode())
        with conn.makefile("rb") as reply:
            reply.readline()


# ---- 1. a worker process killed mid-step; 2. a step that exits its process -------------------


@op
def victim(context, config: GateConfig) -> int:
    """Reports its pid, then (first attempt only) blocks until the test kills its process."""
    context.log.info("victim running", pid=os.getpid())
    if context.retry_number == 0 and not wait_at(config, "never"):
        raise RuntimeError(f"nobody killed process {os.getpid()} within {config.block_s:g}s")
    return 42


@op
def quitter(context, config: GateConfig) -> int:
    """Ends its own process with exit code 3 on its first attempt. (Its LOG may die with
    it: an engine that sends live events in batches, like Dask, loses it.)"""
    context.log.info("quitter running", pid=os.getpid())
    open_gate(config, f"quitter-ran-{context.retry_number}")
    if context.retry_number == 0:
        os._exit(3)
    return 42


@op
def after(x: int) -> int:
    return x + 1


@job
def kill_job():
    after(victim())


@job(retry_policy=RetryPolicy(max_retries=1))
def kill_retry_job():
    after(victim())


@job
def exit_job():
    after(quitter())


@job(retry_policy=RetryPolicy(max_retries=1))
def exit_retry_job():
    after(quitter())


CHILD_SECONDS = 60
"""How long the child process an op starts lives on its own (bounded, like every wait)."""


@op
def spawner(context, config: GateConfig) -> int:
    """Starts a child process (as ops calling command-line tools do), reports both pids,
    then blocks until the test kills this process. The child must not outlive it."""
    child = subprocess.Popen([sys.executable, "-c", f"import threading; threading.Event().wait({CHILD_SECONDS})"])
    context.log.info("spawner running", pid=os.getpid(), child=child.pid)
    wait_at(config, "spawned")
    child.kill()
    child.wait()
    return child.pid


@job
def spawn_job():
    after(spawner())


# ---- 3. a step over its timeout --------------------------------------------------------------


@op(timeout=1.0)
def stuck(context, config: GateConfig) -> int:
    """Runs past its 1 s timeout; every executor kills its process. Should it survive and
    be released, what it logs then must not be recorded. ``finally`` also runs when a
    multiprocess worker unwinds on SIGTERM."""
    context.log.info("stuck running", pid=os.getpid())
    try:
        released = wait_at(config, "release-stuck")
        context.log.info(f"late: stuck went on after its timeout (released={released})")
        return 1
    finally:
        context.log.info("late: stuck unwinding")


@op
def witness(config: GateConfig) -> bool:
    """Keeps the run going until the test saw the timed-out attempt end, so that anything
    that attempt still sent had the chance to be (wrongly) recorded."""
    return wait_at(config, "witness")


@job
def timeout_job():
    stuck()
    witness()


@op(timeout=1.0, retry_policy=RetryPolicy(max_retries=1))
def stuck_once(context, config: GateConfig) -> int:
    """Its first attempt runs past its 1 s timeout (until the test lets it go); the retry
    returns at once, if it gets a worker to run on."""
    context.log.info("stuck_once running", pid=os.getpid())
    if context.retry_number == 0:
        wait_at(config, "release-stuck-once")
    return 7


@job
def timeout_retry_job():
    stuck_once()


# ---- 4. cancel mid-run ----------------------------------------------------------------------------


@op(tags={"plait/priority": 5})
def slow(context, config: GateConfig) -> int:
    """Runs first (highest priority) and blocks until the run is canceled."""
    context.log.info("slow running", pid=os.getpid())
    if not wait_at(config, "release-slow"):
        raise RuntimeError("slow was never released")
    return 1


@op
def quick(config: GateConfig) -> int:
    """Queued behind ``slow`` (one slot): must never start once the run is canceled."""
    open_gate(config, "quick-ran")
    return 2


@job
def cancel_job():
    after(slow())
    quick()


# ---- 5. storage that disappears mid-run ------------------------------------------------------


class ConfigurableFsspecIOManager(ConfigurableResource, IOManager):
    """An ``FsspecIOManager`` configured through run config
    (``resources.io_manager.config: {base_url, storage_options}``), so that a Celery worker,
    which imports the job, stores where the test says."""

    base_url: str
    storage_options: dict[str, Any] = Field(default_factory=dict)

    _manager: FsspecIOManager = PrivateAttr()

    @model_validator(mode="after")
    def _build(self) -> ConfigurableFsspecIOManager:
        self._manager = FsspecIOManager(self.base_url, self.storage_options)
        return self

    def handle_output(self, context: OutputContext, obj: Any) -> StoredOutput:
        return self._manager.handle_output(context, obj)

    def load_input(self, context: InputContext) -> Any:
        return self._manager.load_input(context)

    def preflight(self) -> None:
        self._manager.preflight()

    def describe(self) -> str:
        return self._manager.describe()

    def __repr__(self) -> str:  # pydantic's would print the storage_options' secrets
        return f"{type(self).__name__}({self._manager!r})"


@op
def produce() -> list[int]:
    return [1, 2, 3]


@op
def consume(xs: list[int]) -> int:
    return sum(xs)


@job(resources={"io_manager": ConfigurableFsspecIOManager(base_url="memory://plait-faults-unset")})
def storage_job():
    consume(produce())


# ---- 6. a broker restart (Celery) -------------------------------------------------------------


@op(retry_policy=RetryPolicy(max_retries=2), tags={"plait/priority": 1})
def held(context, config: GateConfig) -> int:
    """Runs on the only worker (first: highest priority) while the broker restarts."""
    context.log.info("held running", pid=os.getpid())
    if context.retry_number == 0:
        wait_at(config, "release-held")
    return 10


@op(retry_policy=RetryPolicy(max_retries=2))
def waiting() -> int:
    """Sent while ``held`` occupies the only worker: it sits in the broker when it restarts."""
    return 5


@op(retry_policy=RetryPolicy(max_retries=2))
def combine(a: int, b: int) -> int:
    return a + b


@job
def restart_job():
    combine(held(), waiting())
