"""A real Dask cluster for tests: ``distributed.LocalCluster`` with worker processes.

Fixtures:

- ``dask_address`` (session): a LocalCluster (2 worker processes, 1 thread each, on
  127.0.0.1) shared by every test that only submits work; yields its scheduler address.
- ``dask_cluster_factory`` (function): starts small LocalClusters of its own for
  destructive tests (killing workers); every one it started is closed after the test, and
  its processes are checked to be gone.
- ``dask_process_cluster`` (function): a scheduler and one worker started as separate
  ``dask scheduler`` / ``dask worker --no-nanny`` processes, as on a real cluster, so a
  test can kill the scheduler. The worker has no copy of the tests (jobs need
  ``ship_code``). ``dask_nanny_cluster``: the same with the worker under its nanny.

The LocalClusters live in a helper process (``python -m tests.services.dask_cluster``),
not in pytest's: see ``ClusterProcess``.

If distributed is not installed the tests are skipped (or fail under
``PLAIT_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.services._require import free_port, missing_service, wait_for_port

ROOT = Path(__file__).resolve().parents[2]

CLOSE_TIMEOUT = 20.0
START_TIMEOUT = 60.0


class ClusterProcess:
    """A LocalCluster (worker processes, on 127.0.0.1) hosted by a helper process.

    Hosting it outside the test process keeps Dask's threads (event loop, nanny
    watchers) out of pytest, where they would stop the multiprocess executor from
    using ``fork`` in later tests. The helper gets this process's ``sys.path``, so
    its workers import test modules under the names pytest gave them.
    """

    def __init__(self, **options: Any) -> None:
        try:
            import distributed  # noqa: F401
        except ImportError as exc:
            missing_service(f"distributed is not installed ({exc}); install plait-dask")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.services.dask_cluster", json.dumps(options)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line.startswith("tcp://"):
            self.close()
            missing_service(f"a Dask LocalCluster did not start within {START_TIMEOUT:g}s")
        self.scheduler_address = line

    def close(self) -> None:
        """Stop the cluster and check that every process it started is gone."""
        import psutil

        if self.proc.poll() is None:
            children = psutil.Process(self.proc.pid).children(recursive=True)
            self.proc.stdin.close()  # the helper closes its cluster and exits
            try:
                self.proc.wait(CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(CLOSE_TIMEOUT)
            _, alive = psutil.wait_procs(children, timeout=CLOSE_TIMEOUT)
            for proc in alive:
                proc.kill()
            assert not alive, f"Dask processes outlived their cluster: {[p.pid for p in alive]}"
        self.proc.stdout.close()


@pytest.fixture(scope="session")
def dask_address() -> Iterator[str]:
    """Scheduler address of a 2-worker LocalCluster shared by the whole session."""
    cluster = ClusterProcess()
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture
def dask_cluster_factory() -> Iterator[Callable[..., ClusterProcess]]:
    """``start(**LocalCluster_kwargs) -> ClusterProcess``: clusters a test may break."""
    started: list[ClusterProcess] = []

    def start(**options: Any) -> ClusterProcess:
        cluster = ClusterProcess(**options)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.close()


@dataclass
class ProcessCluster:
    address: str
    scheduler: subprocess.Popen
    worker: subprocess.Popen
    """The ``dask worker`` process: the worker itself, or its nanny (``nanny=True``)."""


@pytest.fixture
def dask_process_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    """A scheduler process and one worker process (1 thread, no nanny) on 127.0.0.1."""
    yield from _process_cluster(tmp_path_factory, nanny=False)


@pytest.fixture
def dask_nanny_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    """A scheduler process and ``dask worker`` with its nanny (1 thread) on 127.0.0.1, as
    on a cluster plait did not start: plait's plugins come from the client."""
    yield from _process_cluster(tmp_path_factory, nanny=True)


def _process_cluster(tmp_path_factory: pytest.TempPathFactory, nanny: bool) -> Iterator[ProcessCluster]:
    try:
        from distributed import Client
    except ImportError as exc:
        missing_service(f"distributed is not installed ({exc}); install plait-dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    cwd = tmp_path_factory.mktemp("dask-processes")  # not the repo: no test code importable
    common = {"cwd": cwd, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", str(port), "--dashboard-address", "127.0.0.1:0"], **common,
    )
    procs = [scheduler]
    try:
        if not wait_for_port(port, START_TIMEOUT):
            missing_service(f"the dask scheduler did not listen on {address} in {START_TIMEOUT}s")
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
             "--nanny" if nanny else "--no-nanny", "--host", "127.0.0.1",
             "--dashboard-address", "127.0.0.1:0"], **common,
        )
        procs.append(worker)
        with Client(address, set_as_default=False, timeout=START_TIMEOUT) as client:
            client.wait_for_workers(1, timeout=START_TIMEOUT)
        yield ProcessCluster(address, scheduler, worker)
    finally:
        _stop(procs[::-1])


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM, so that a nanny stops its worker process, then SIGKILL what is left."""
    import psutil

    for proc in procs:
        children = []
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(proc.pid).children(recursive=True)
        proc.terminate()
        try:
            proc.wait(CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(CLOSE_TIMEOUT)
        _, alive = psutil.wait_procs(children, timeout=CLOSE_TIMEOUT)
        for child in alive:
            child.kill()


def _serve(options: dict[str, Any]) -> None:
    """The helper process: start the cluster, print its address, stop at end of stdin."""
    defaults: dict[str, Any] = {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": None,
    }
    from distributed import LocalCluster

    with warnings.catch_warnings():
        # the scheduler's HTTP server falls back to a free port when 8787 is taken
        warnings.filterwarnings("ignore", message="Port 8787 is already in use")
        cluster = LocalCluster(**{**defaults, **options})
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()
    cluster.close(timeout=CLOSE_TIMEOUT)


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
