"""The reply stream: how workers tell the coordinator what happened to a step.

One Redis stream per executor session (``plait:replies:<session id>``) on the ``backend``
Redis. Workers append entries (``XADD``); the executor reads them with a blocking
``XREAD`` from the last id it saw, so a reader that lost its connection resumes where it
stopped and misses nothing the server still holds (pub/sub would drop whatever was
published while it was away). Entries:

=========  ===========================  ==============================================
kind       body                         sent by
=========  ===========================  ==============================================
event      StepEvent JSON               the step's process: STEP_START, LOG (best effort)
outcome    StepOutcome JSON             the step's process when the step ended (retried)
lost       {"reason": ..., "pid": ...}  the worker's main process: a pool process died
stop       {}                           the executor itself, to wake its reader at stop
=========  ===========================  ==============================================

Every entry names the Celery task id, the worker's hostname and pid, and the delivery
(one execution of the task: a task redelivered after its process died runs again).

``plait:outcome:<task id>`` settles a task: the worker stores the outcome there in the
same round trip as the stream entry, the executor stores ``{}`` when it gives up on the
attempt (cancel, timeout, lost). It is the authoritative record: the health check reads
it when a step stopped running but its stream entry never arrived (Redis restarted in
between), and a worker that receives a settled task again (a redelivery, a message
restored after a broker reconnect or the visibility timeout) skips it. Celery's own
result storage is off (``ignore_result``): it would store the same outcome a second time.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

STREAM_PREFIX = "plait:replies:"
OUTCOME_PREFIX = "plait:outcome:"
STREAM_MAXLEN = 100_000
STREAM_TTL_S = 86_400
OUTCOME_TTL_S = 3 * 86_400
OUTCOME_PUBLISH_DEADLINE_S = 120.0
"""How long a worker keeps trying to deliver an outcome while Redis is unreachable."""


def stream_key(session_id: str) -> str:
    return STREAM_PREFIX + session_id


def outcome_key(task_id: str) -> str:
    return OUTCOME_PREFIX + task_id


@dataclass(frozen=True)
class Reply:
    """One decoded stream entry."""

    kind: str
    task_id: str
    host: str
    pid: int
    body: dict[str, Any]
    delivery: str = ""
    """Which execution of the task sent it (a task may be delivered more than once)."""


def redis_client(url: str, connect_timeout: float, read_timeout: float | None) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=connect_timeout, socket_timeout=read_timeout
    )


class ReplyPublisher:
    """The worker side: appends entries to a reply stream. One per process; a forked
    pool process builds its own connection on first use."""

    def __init__(self, url: str, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self._client: redis.Redis | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def client(self) -> redis.Redis:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = redis_client(self.url, self.connect_timeout, 30.0)
                self._pid = os.getpid()
            return self._client

    def send(self, stream: str, kind: str, task_id: str, host: str, body: dict[str, Any],
             *, delivery: str = "", deadline_s: float = 0.0) -> bool:
        """Append one entry (an outcome is also stored under ``outcome_key``, in the same
        round trip); retry connection errors until ``deadline_s`` passed (0: try once).
        Returns whether it was delivered."""
        payload = json.dumps(body)
        fields = {"kind": kind, "task": task_id, "host": host, "pid": os.getpid(),
                  "delivery": delivery, "body": payload}
        give_up = time.monotonic() + deadline_s
        delay = 0.05
        while True:
            try:
                pipe = self.client().pipeline(transaction=False)
                pipe.xadd(stream, fields, maxlen=STREAM_MAXLEN, approximate=True)
                if kind == "outcome":
                    pipe.expire(stream, STREAM_TTL_S)
                    pipe.set(outcome_key(task_id), payload, ex=OUTCOME_TTL_S)
                pipe.execute()
                return True
            except (redis.ConnectionError, redis.TimeoutError):
                if time.monotonic() + delay > give_up:
                    return False
                # a reconnect backoff while Redis is down, not a wait for a result
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def is_settled(self, task_id: str) -> bool:
        try:
            return bool(self.client().exists(outcome_key(task_id)))
        except (redis.ConnectionError, redis.TimeoutError):
            return False  # cannot tell: run it; the coordinator fences a stale outcome


class ReplyReader:
    """The executor side: reads one reply stream from where it last stopped."""

    def __init__(self, url: str, key: str, connect_timeout: float) -> None:
        self.key = key
        self.last_id = "0-0"
        self._block_s = 5.0
        self._client = redis_client(url, connect_timeout, self._block_s + connect_timeout + 5)

    def read(self, block_s: float | None = None) -> list[Reply]:
        """The next entries, blocking up to ``block_s`` seconds for the first one.
        Raises ``redis.ConnectionError`` when Redis is unreachable."""
        block_ms = int((self._block_s if block_s is None else block_s) * 1000)
        answer = self._client.xread({self.key: self.last_id}, count=1000, block=block_ms)
        replies: list[Reply] = []
        for _key, entries in answer or []:
            for entry_id, fields in entries:
                self.last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                replies.append(_decode(fields))
        return replies

    def server_id(self) -> str:
        """Redis's ``run_id``: it changes when the server restarts (and lost its data)."""
        return str(self._client.info("server").get("run_id", ""))

    def close(self) -> None:
        self._client.close()


def _decode(fields: dict[bytes, bytes]) -> Reply:
    get = {k.decode(): v.decode() for k, v in fields.items()}
    return Reply(
        kind=get.get("kind", ""),
        task_id=get.get("task", ""),
        host=get.get("host", ""),
        pid=int(get.get("pid", "0") or 0),
        body=json.loads(get.get("body") or "{}"),
        delivery=get.get("delivery", ""),
    )
