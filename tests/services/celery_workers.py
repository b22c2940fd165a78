"""Real plait Celery workers for tests: ``plait celery worker`` subprocesses against the
session's throwaway Redis (``tests.services.redis``).

Fixtures:

- ``celery_fleet`` (session): two workers (concurrency 1 each) consuming a queue unique to
  the session; the second also consumes a "heavy" queue. ``fleet.config(**overrides)``
  gives the executor config that reaches them.
- ``worker_factory`` (function): starts extra workers (e.g. to kill one, or one that starts
  after a run was submitted) against any broker; each is stopped when the test ends.

A worker is ready when it writes its first heartbeat (``plait:worker:<hostname>`` on the
backend Redis), which it does once it consumes its queues: the fixture waits for that
key's keyspace notification, with a deadline. Output goes to a log file (no reader
thread is left in the test process). Stopping sends SIGQUIT (Celery's cold shutdown),
then SIGKILL to the worker and its pool processes, and checks with psutil that none is
left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.services.redis import KeyspaceWatch, RedisServer

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
REPO = Path(__file__).resolve().parents[2]


def worker_command() -> list[str]:
    """``plait celery worker`` (the CLI loads the plugin from the ``plait.cli`` entry
    points); the module form only where the ``plait`` script is not installed."""
    plait = Path(sys.executable).with_name("plait")
    if plait.exists():
        return [str(plait), "celery", "worker"]
    return [sys.executable, "-m", "plait_celery.worker"]


@dataclass
class WorkerProcess:
    """One worker subprocess, its output in ``log_path``."""

    hostname: str
    queues: list[str]
    proc: subprocess.Popen[bytes]
    log_path: Path
    _ready: KeyspaceWatch | None = field(default=None, repr=False)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        watch, self._ready = self._ready, None
        if watch is None:
            return
        with watch:
            beat = watch.wait({"set"}, timeout, alive=lambda: self.proc.poll() is None)
        if beat is None:
            self.stop()
            raise RuntimeError(f"celery worker {self.hostname} did not become ready within "
                               f"{timeout}s:\n{self.output[-4000:]}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pool_pids(self) -> list[int]:
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once (a machine dying)."""
        procs = _tree(self.proc.pid)
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(procs, timeout=STOP_TIMEOUT)
        self.proc.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        if self._ready is not None:
            self._ready.close()
            self._ready = None
        procs = _tree(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # cold shutdown: nothing is running any more
        _, alive = psutil.wait_procs(procs, timeout=STOP_TIMEOUT)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        _, alive = psutil.wait_procs(alive, timeout=STOP_TIMEOUT)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT)
        assert not alive, f"worker processes survived SIGKILL: {[p.pid for p in alive]}"


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def start_worker(broker: str, backend: str, queues: list[str], log_dir: Path, *,
                 hostname: str | None = None, concurrency: int = 1,
                 extra: list[str] | None = None, wait: bool = True,
                 config_file: Path | None = None, env: dict[str, str] | None = None
                 ) -> WorkerProcess:
    """Start ``plait celery worker`` consuming ``queues``; wait until it is ready unless
    ``wait=False`` (then call ``wait_ready()``). With ``config_file`` the worker reads its
    broker, backend and queue from that file (``-C``), with ``env`` added to its
    environment; ``backend`` then only says where to await its heartbeat."""
    hostname = hostname or f"w{uuid.uuid4().hex[:8]}@plait-test"
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    where = (["--config", str(config_file)] if config_file is not None
             else ["--broker", broker, "--backend", backend, "-Q", ",".join(queues)])
    command = [
        *worker_command(), *where, "--concurrency", str(concurrency), "-n", hostname,
        "--loglevel", "INFO", *(extra or []),
    ]
    ready = KeyspaceWatch(backend, f"plait:worker:{hostname}")  # before the worker starts
    log_path = log_dir / f"{hostname.split('@')[0]}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=str(REPO))
    worker = WorkerProcess(hostname, queues, proc, log_path, ready)
    if wait:
        worker.wait_ready()
    return worker


@dataclass
class CeleryFleet:
    """The session's Redis and workers, and the executor config that reaches them."""

    redis: RedisServer
    queue: str
    heavy_queue: str
    workers: list[WorkerProcess]
    log_dir: Path

    @property
    def broker(self) -> str:
        return self.redis.db(0)

    @property
    def backend(self) -> str:
        return self.redis.db(1)

    def config(self, **overrides: Any) -> dict[str, Any]:
        return {"broker": self.broker, "backend": self.backend, "queue": self.queue,
                "worker_wait_timeout": 30.0, "lost_after": 5.0,
                "health_check_interval": 0.5, **overrides}

    def run_config(self, **overrides: Any) -> dict[str, Any]:
        return {"execution": {"celery": self.config(**overrides)}}


@pytest.fixture(scope="session")
def celery_fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[CeleryFleet]:
    """Two workers on a queue unique to this session; the second also serves "heavy"."""
    pytest.importorskip("plait_celery")
    tag = uuid.uuid4().hex[:8]
    log_dir = tmp_path_factory.mktemp("celery-workers")
    queue, heavy = f"plait-{tag}", f"heavy-{tag}"
    broker, backend = redis_server.db(0), redis_server.db(1)
    workers: list[WorkerProcess] = []
    try:
        workers.append(start_worker(broker, backend, [queue], log_dir,
                                    hostname=f"a-{tag}@plait-test", wait=False))
        workers.append(start_worker(broker, backend, [queue, heavy], log_dir,
                                    hostname=f"b-{tag}@plait-test", wait=False))
        for worker in workers:
            worker.wait_ready()
        yield CeleryFleet(redis_server, queue, heavy, workers, log_dir)
    finally:
        for worker in workers:
            worker.stop()


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``worker_factory(broker, backend, queues, **kw)``: extra workers, stopped at test end."""
    started: list[WorkerProcess] = []

    def start(broker: str, backend: str, queues: list[str], **kwargs: Any) -> WorkerProcess:
        worker = start_worker(broker, backend, queues, tmp_path, **kwargs)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
