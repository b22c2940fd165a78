"""Worker heartbeats: how the executor knows which workers are alive, which queues they
consume and which tasks they hold, with plain Redis reads.

Every ``plait celery worker`` main process writes, each ``HEARTBEAT_INTERVAL_S``::

    plait:worker:<hostname>  = {"hostname", "pid", "queues", "held", "time"}  (expires)
    plait:workers            = set of hostnames that ever beat (pruned by readers)

on the result backend's Redis. ``held`` lists the Celery task ids the worker has reserved
or is running; ``time`` is the worker's clock, comparable with the timestamps of the
events its steps emit. A worker that dies stops beating and its key expires after
``HEARTBEAT_TTL_S``. Celery's own control broadcasts (``inspect``) would answer the same
questions, but a broadcast over a pooled connection can hang after the broker restarts;
these reads are bounded by socket timeouts.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from plait_celery.replies import redis_client

WORKERS_KEY = "plait:workers"
HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_TTL_S = 5.0


def worker_key(hostname: str) -> str:
    return "plait:worker:" + hostname


@dataclass(frozen=True)
class WorkerBeat:
    """The last heartbeat of one live worker."""

    hostname: str
    pid: int
    queues: frozenset[str]
    held: frozenset[str]
    time: float


def held_task_ids() -> list[str]:
    """Ids of the tasks this worker process has reserved or is running (main process)."""
    from celery.worker import state

    for _ in range(5):
        try:
            return sorted({r.id for r in list(state.reserved_requests)}
                          | {r.id for r in list(state.active_requests)})
        except RuntimeError:  # the main thread changed the set while we copied it
            continue
    return []


class Heartbeat:
    """The worker side: a daemon thread in the worker's main process."""

    def __init__(self, url: str, hostname: str, queues: Sequence[str],
                 interval: float = HEARTBEAT_INTERVAL_S, connect_timeout: float = 5.0) -> None:
        self.hostname = hostname
        self.queues = list(queues)
        self.interval = interval
        self._client = redis_client(url, connect_timeout, connect_timeout)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="plait-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        with contextlib.suppress(redis.RedisError):  # else the key expires on its own
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(worker_key(self.hostname))
            pipe.srem(WORKERS_KEY, self.hostname)
            pipe.execute()

    def _run(self) -> None:
        while True:
            # Redis unreachable: the executor sees no beat, as it should
            with contextlib.suppress(redis.RedisError):
                self.beat()
            if self._stop.wait(self.interval):
                return

    def beat(self) -> None:
        info = {"hostname": self.hostname, "pid": os.getpid(), "queues": self.queues,
                "held": held_task_ids(), "time": time.time()}
        pipe = self._client.pipeline(transaction=False)
        pipe.set(worker_key(self.hostname), json.dumps(info), px=int(HEARTBEAT_TTL_S * 1000))
        pipe.sadd(WORKERS_KEY, self.hostname)
        pipe.execute()


def live_workers(client: redis.Redis) -> dict[str, WorkerBeat]:
    """The workers whose heartbeat has not expired, by hostname. Raises
    ``redis.RedisError`` when Redis is unreachable."""
    hosts = sorted(h.decode() if isinstance(h, bytes) else h for h in client.smembers(WORKERS_KEY))
    if not hosts:
        return {}
    beats: dict[str, WorkerBeat] = {}
    dead: list[str] = []
    for host, raw in zip(hosts, client.mget([worker_key(h) for h in hosts]), strict=True):
        if raw is None:
            dead.append(host)
            continue
        info = json.loads(raw)
        beats[host] = WorkerBeat(host, int(info.get("pid", 0)), frozenset(info.get("queues", [])),
                                 frozenset(info.get("held", [])), float(info.get("time", 0.0)))
    if dead:
        client.srem(WORKERS_KEY, *dead)
    return beats
