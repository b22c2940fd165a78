"""What the executor's health check reads about the fleet, each a bounded Redis read:
worker heartbeats (``plait_celery.heartbeat``), a task's outcome record
(``plait_celery.replies``), and whether the broker's Redis restarted (losing every
queued message) or still holds a queue's messages."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from plait_celery.heartbeat import WorkerBeat, live_workers
from plait_celery.replies import outcome_key, redis_client


class FleetView:
    """Reads about the fleet from the result backend's Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def workers(self) -> dict[str, WorkerBeat]:
        return live_workers(self._client)

    def stored_outcome(self, task_id: str) -> dict[str, Any] | None:
        """The outcome a worker stored for the task (JSON), if any."""
        raw = self._client.get(outcome_key(task_id))
        data = json.loads(raw) if raw else None
        return data if isinstance(data, dict) and "step_key" in data else None


class BrokerView:
    """Reads a Redis broker directly: whether it restarted since the view was made (its
    ``run_id`` changes, and without persistence every queued message is gone), and how
    many messages wait in a queue (kombu keeps one list per priority step)."""

    def __init__(self, url: str, connect_timeout: float, transport: dict[str, Any]) -> None:
        self._client = redis_client(url, connect_timeout, connect_timeout)
        self._steps = list(transport.get("priority_steps") or [0])
        self._sep = transport.get("sep", "\x06\x16")
        self._prefix = transport.get("global_keyprefix", "")
        self._run_id = self._info()["run_id"]

    def _info(self) -> dict[str, Any]:
        return self._client.info("server")

    def restarted_before(self) -> float | None:
        """None if the same server still runs; else a wall-clock time by which it had
        surely restarted (its uptime has a one-second resolution, so this errs late).
        Raises ``redis.RedisError`` while it is unreachable."""
        info = self._info()
        if info["run_id"] == self._run_id:
            return None
        self._run_id = info["run_id"]
        return time.time() - float(info.get("uptime_in_seconds", 0)) + 1.0

    def queue_length(self, queue: str) -> int:
        pipe = self._client.pipeline(transaction=False)
        for step in self._steps:
            name = f"{queue}{self._sep}{step}" if step else queue
            pipe.llen(self._prefix + name)
        return sum(pipe.execute())

    def close(self) -> None:
        self._client.close()
