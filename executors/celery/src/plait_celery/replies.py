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
stop/wake  {}                           the executor itself, to return a blocked read
=========  ===========================  ==============================================

Every entry names the Celery task id, the worker's hostname and pid, and the delivery
(one execution of the task: a task redelivered after its process died runs again).

``plait:outcome:<task id>`` settles a task: the worker stores the outcome there in the
same round trip as the stream entry, the executor stores ``{}`` when it gives up on the
attempt (cancel, timeout, lost); whichever comes first stays (``SET NX``). It is the authoritative record: the health check reads
it when a step stopped running but its stream entry never arrived (Redis restarted in
between), and a worker that receives a settled task again (a redelivery, a message
restored after a broker reconnect or the visibility timeout) skips it. Celery's own
result storage is off (``ignore_result``): it would store the same outcome a second time.
"""

from __future__ import annotations

import contextlib
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
    """The worker side: appends entries to reply streams over one connection per process.

    A live event is written without waiting for Redis's answer (``post``): the step runs
    on while Redis appends it, and the answer is read before the next command that needs
    one (a connection answers in order). That keeps a step's round trips to Redis at the
    ones it must wait for: is it settled (before it runs, before it stores an output), and
    its outcome. Safe for ops that log from several threads. A forked pool process opens
    its own connection on first use."""

    def __init__(self, url: str, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self._pool: redis.ConnectionPool | None = None
        self._conn: Any = None
        self._pid = 0
        self._unanswered = 0
        self._lock = threading.Lock()

    def _connection(self) -> Any:
        """This process's connection (caller holds ``_lock``)."""
        if self._conn is None or self._pid != os.getpid():
            self._pool = redis.ConnectionPool.from_url(
                self.url, socket_connect_timeout=self.connect_timeout, socket_timeout=30.0)
            self._conn, self._pid, self._unanswered = self._pool.make_connection(), os.getpid(), 0
        return self._conn

    def _reset(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.disconnect()
        self._unanswered = 0

    def _call(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write; return their answers, after reading those of
        earlier posts. Raises ``redis.ConnectionError``/``TimeoutError`` (the connection is
        then reset) and the first ``redis.ResponseError`` of ``commands``."""
        with self._lock:
            conn = self._connection()
            try:
                conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                while self._unanswered:
                    self._unanswered -= 1
                    with contextlib.suppress(redis.ResponseError):  # a post: best effort
                        conn.read_response()
                answers: list[Any] = []
                for _ in commands:
                    try:
                        answers.append(conn.read_response())
                    except redis.ResponseError as exc:
                        answers.append(exc)
            except (redis.ConnectionError, redis.TimeoutError):
                self._reset()
                raise
        for answer in answers:
            if isinstance(answer, redis.ResponseError):
                raise answer
        return answers

    @staticmethod
    def _xadd(stream: str, kind: str, task_id: str, host: str, payload: str,
              delivery: str) -> tuple[Any, ...]:
        return ("XADD", stream, "MAXLEN", "~", STREAM_MAXLEN, "*", "kind", kind, "task", task_id,
                "host", host, "pid", os.getpid(), "delivery", delivery, "body", payload)

    def post(self, stream: str, kind: str, task_id: str, host: str, payload: str, *,
             delivery: str = "") -> None:
        """Append one entry (JSON text ``payload``) without waiting for the answer. Best
        effort: a lost live event is recovered from the step's outcome."""
        with self._lock:
            try:
                conn = self._connection()
                conn.send_packed_command(
                    conn.pack_command(*self._xadd(stream, kind, task_id, host, payload, delivery)),
                    check_health=False)
                self._unanswered += 1
            except (redis.ConnectionError, redis.TimeoutError):
                self._reset()

    def send(self, stream: str, kind: str, task_id: str, host: str, payload: str,
             *, delivery: str = "", deadline_s: float = 0.0) -> bool:
        """Append one entry (JSON text ``payload``) and wait until Redis has it; an outcome
        is also stored under ``outcome_key``, in the same round trip. Retries connection
        errors until ``deadline_s`` passed (0: try once). Returns whether it was delivered."""
        commands = [self._xadd(stream, kind, task_id, host, payload, delivery)]
        if kind == "outcome":
            # the first record stands: the coordinator's on giving up, or the outcome of a
            # delivery that finished first
            commands += [("EXPIRE", stream, STREAM_TTL_S),
                         ("SET", outcome_key(task_id), payload, "EX", OUTCOME_TTL_S, "NX")]
        give_up = time.monotonic() + deadline_s
        delay = 0.05
        while True:
            try:
                self._call(commands)
                return True
            except (redis.ConnectionError, redis.TimeoutError):
                if time.monotonic() + delay > give_up:
                    return False
                # a reconnect backoff while Redis is down, not a wait for a result
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def is_settled(self, task_id: str) -> bool:
        try:
            return bool(self._call([("EXISTS", outcome_key(task_id))])[0])
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
        # XREAD BLOCK 0 would wait for ever: below a millisecond, look without waiting
        answer = self._client.xread({self.key: self.last_id}, count=1000,
                                    block=block_ms if block_ms > 0 else None)
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
