"""Throwaway Redis servers for tests: real ``redis-server`` processes on free loopback
ports, without persistence, never the machine's own Redis.

Fixtures:

- ``redis_server`` (session): one server for the whole session (``.url``, ``.db(n)``).
- ``redis_url`` (session): its URL, ``redis://127.0.0.1:<port>``.
- ``redis_factory`` (function): starts extra servers (``redis_factory()``) that the test
  may kill and start again on the same port (``server.kill()``, ``server.start()``), for
  broker-restart tests; all are stopped when the test ends.

``KeyspaceWatch(url, key)`` waits, without polling, until Redis touches a key (it turns
keyspace notifications on: these servers are throwaway).

Without ``redis-server`` on PATH the tests that use them are skipped (or fail under
``PLAIT_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services._require import free_port, missing_service, wait_for_port

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class RedisServer:
    """One ``redis-server`` process on a fixed loopback port; restartable on that port."""

    def __init__(self, port: int | None = None, log_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self._log_dir = log_dir or Path(tempfile.mkdtemp(prefix="plait-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def db(self, number: int) -> str:
        return f"{self.url}/{number}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> RedisServer:
        """Start (or start again) on ``self.port``; fails the test if it does not come up."""
        binary = shutil.which("redis-server")
        if binary is None:
            missing_service("redis-server is not on PATH (apt-get install redis-server)")
        log = open(self._log_dir / f"redis-{self.port}.log", "ab")  # noqa: SIM115 - closed by the process
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self._log_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if not wait_for_port(self.port, START_TIMEOUT) or self.proc.poll() is not None:
            self.stop()
            tail = (self._log_dir / f"redis-{self.port}.log").read_text(errors="replace")[-2000:]
            missing_service(f"redis-server did not start on port {self.port}: {tail}")
        return self

    def kill(self) -> None:
        """SIGKILL: the server dies with everything it held (no persistence)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server running for the whole test session."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    """Start extra, short-lived servers; each is stopped when the test ends."""
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer(log_dir=tmp_path).start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


class KeyspaceWatch:
    """Waits until Redis touches one key (keyspace notifications), without polling.

    Subscribe *before* causing the change: a notification sent before is not replayed.
    ``key`` may be a glob pattern (``queue*``). ``wait`` returns the event name (``set``,
    ``rpop``, ``del``, ...) or None at the deadline.
    """

    def __init__(self, url: str, key: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=10)
        self._client.config_set("notify-keyspace-events", "KA")
        db = self._client.connection_pool.connection_kwargs.get("db", 0)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe(f"__keyspace@{db}__:{key}")

    def wait(self, events: set[str] | None = None, timeout: float = 30.0,
             alive: Callable[[], bool] = lambda: True) -> str | None:
        import time

        deadline = time.monotonic() + timeout
        while alive() and (left := deadline - time.monotonic()) > 0:
            # blocks on the subscription; the slice only lets `alive` be asked again
            message = self._pubsub.get_message(timeout=min(left, 0.5))
            if message is not None:
                name = message["data"].decode()
                if events is None or name in events:
                    return name
        return None

    def close(self) -> None:
        self._pubsub.close()
        self._client.close()

    def __enter__(self) -> KeyspaceWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
