"""``CeleryExecutor``: plait steps as Celery tasks on a worker fleet.

A step attempt travels as one ``plait.run_step`` message (JSON: code pointer, config,
input handles; never a pickle) to the queue named by the op's ``celery/queue`` tag
(default: the ``queue`` config key), with a Celery priority from ``plait/priority``.
Its end comes back on the reply stream (``plait_celery.replies``), read by one thread at a
time (the *read turn*): the thread in ``wait`` reads it itself, so an outcome reaches the
run loop without a hand-over between threads, and a background thread reads it when
nobody has waited for a moment (live events still arrive while the caller does other
things). Entries become live events (``deliver``) and outcomes. Whether an attempt can
still finish is the health check's business (``plait_celery.health``): it fails lost
ones, so no wait is endless.

A pool process that dies mid-step is reported by its worker (a ``lost`` reply) and Celery
requeues the message (acks_late + reject_on_worker_lost): the attempt runs again with the
same attempt number. Its events are indexed apart from the first delivery's (its
STEP_START says "redelivered"), and only one outcome of the attempt is ever accepted.
After ``max_redeliveries`` the attempt fails as ``crash``. Whatever the executor gives up
on (cancel, timeout, lost) gets an empty outcome record, so a later delivery is skipped,
and is revoked with SIGKILL, so a running one is killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

import redis
from plait._defs.op import PRIORITY_TAG
from plait.errors import ExecutorError
from plait.events import EventType, StepEvent
from plait.executors.base import Executor, StepHandle, StepOutcome, StepTask
from plait.executors.wire import event_from_json, outcome_from_json, task_to_json
from pydantic import BaseModel

from plait_celery.app import make_app
from plait_celery.config import CeleryConfig, celery_priority, celery_settings, safe_url
from plait_celery.fleet import BrokerView, FleetView
from plait_celery.health import HealthCheck, InFlight
from plait_celery.replies import (
    OUTCOME_TTL_S,
    Reply,
    ReplyReader,
    outcome_key,
    redis_client,
    stream_key,
)
from plait_celery.tasks import TASK_NAME

if TYPE_CHECKING:
    from celery import Celery
    from plait._defs.job import JobDefinition

log = logging.getLogger("plait.celery")

QUEUE_TAG = "celery/queue"
DELIVERY_INDEX_STRIDE = 1_000_000_000
"""Event indexes of the n-th redelivery of an attempt start at n * stride, so its events
are recorded (not taken for the first delivery's, which share their indexes)."""
NOTICE_INDEX_BASE = 1_000 * DELIVERY_INDEX_STRIDE
"""Event index of the executor's own notices, above any delivery's events."""
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.5, "interval_max": 1.0}
STOP_JOIN_S = 10.0
READ_BLOCK_S = 5.0
"""Longest blocking read of the reply stream (a ``wait`` with a shorter timeout blocks less)."""
IDLE_READ_AFTER_S = 0.05
"""The background reader takes the read turn once nobody waited for this long: a run loop
waits again within a millisecond of an outcome, and should find the turn free."""


class CeleryExecutor(Executor):
    """Runs each step as a Celery task on workers started with ``plait celery worker``."""

    name: ClassVar[str] = "celery"
    config_model: ClassVar[type[BaseModel]] = CeleryConfig
    requires_code_pointer: ClassVar[bool] = True

    config: CeleryConfig

    def __init__(self, config: BaseModel | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        mutex = threading.RLock()
        self.lock = threading.Condition(mutex)
        """Guards the in-flight attempts; notified when one ends or the read turn is free."""
        self._nobody_waits = threading.Condition(mutex)
        """The background reader waits on it for its turn (notified at stop)."""
        self._live: dict[str, InFlight] = {}
        self._stopping = threading.Event()
        self._revokes: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._reader: ReplyReader | None = None
        self._reading = False
        """A thread holds the read turn (guarded by ``lock``)."""
        self._turn_thread: threading.Thread | None = None
        self._waiters = 0
        self._last_wait_end = 0.0
        self._read_failures = 0
        self._app: Celery | None = None
        self._stream = ""
        self._admin: redis.Redis | None = None
        self._broker: BrokerView | None = None
        self._health: HealthCheck | None = None

    @property
    def max_concurrent(self) -> int:
        return self.config.max_concurrent

    @property
    def app(self) -> Celery:
        if self._app is None:
            raise ExecutorError("the Celery executor is not started; use it in a `with` block")
        return self._app

    # ---- before the run -----------------------------------------------------------------

    def check_job(self, job: JobDefinition, task_template: StepTask | None) -> None:
        """Refuse ops whose timeout outlasts Redis's visibility timeout: Redis would hand
        the still-running step to a second worker."""
        cfg = self.config
        if not cfg.broker_is_redis:
            return
        limit = cfg.effective_visibility_timeout
        too_long = sorted(
            (key, node.op.timeout)
            for key, node in job.nodes.items()
            if node.op.timeout is not None and node.op.timeout >= limit
        )
        if too_long:
            ops = ", ".join(f"{key!r} (timeout={t:g}s)" for key, t in too_long)
            wanted = int(max(t for _, t in too_long) * 1.25) + 60
            raise ExecutorError(
                f"op(s) {ops} may run longer than the Redis broker's visibility_timeout "
                f"({limit:g}s), after which Redis hands the unacknowledged step to another "
                f"worker while it still runs. Set execution.celery.visibility_timeout to "
                f"at least {wanted}, and start workers with --visibility-timeout {wanted}"
            )

    def start(self) -> None:
        cfg = self.config
        app = make_app(cfg)
        try:
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, interval_start=0.1, interval_step=0.1,
                                       timeout=cfg.connect_timeout)
        except Exception as exc:  # noqa: BLE001 - kombu raises many types; all mean the same
            app.close()
            raise ExecutorError(
                f"cannot reach the Celery broker at {safe_url(cfg.broker)}: {exc}. Start the "
                "broker, or fix execution.celery.broker"
            ) from exc
        backend = cfg.result_backend
        self._stream = stream_key(uuid.uuid4().hex)
        try:
            reader = ReplyReader(backend, self._stream, cfg.connect_timeout)
            reader.server_id()
            self._admin = redis_client(backend, cfg.connect_timeout, cfg.connect_timeout)
            if cfg.broker_is_redis:
                transport = celery_settings(cfg)["broker_transport_options"]
                self._broker = BrokerView(cfg.broker, cfg.connect_timeout, transport)
        except redis.RedisError as exc:
            app.close()
            raise ExecutorError(
                f"cannot reach the result backend (Redis) at {safe_url(backend)}: {exc}. "
                "Start it, or fix execution.celery.backend"
            ) from exc
        self._app = app
        self._reader = reader
        self._stopping.clear()
        self._health = HealthCheck(self, FleetView(self._admin), self._broker, self._stopping)
        self._threads = [
            threading.Thread(target=self._read_loop, name="plait-celery-replies", daemon=True),
            threading.Thread(target=self._health.run, name="plait-celery-health", daemon=True),
            threading.Thread(target=self._revoke_loop, name="plait-celery-revoke", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        with self.lock:
            leftovers = list(self._live.values())
            self._live.clear()
        for handle in leftovers:
            self._abandon(handle)
        self._revokes.put(None)  # the revoke thread sends what is queued, then ends
        self._stopping.set()
        self._poke()
        with self.lock:
            self.lock.notify_all()
            self._nobody_waits.notify_all()
        self._wake_reader("stop")
        deadline = time.monotonic() + STOP_JOIN_S
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self._threads = []
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        admin = self._admin
        if admin is not None:
            with contextlib.suppress(redis.RedisError):  # else it expires (STREAM_TTL_S)
                admin.delete(self._stream)
            admin.close()
        if self._broker is not None:
            self._broker.close()
        if self._app is not None:
            self._app.close()
        self._app = self._admin = self._broker = self._health = None

    # ---- the executor contract ------------------------------------------------------------

    def submit(self, task: StepTask) -> StepHandle:
        cfg = self.config
        data = task_to_json(task)
        data["job_pointer"] = absolute_pointer(data["job_pointer"])
        queue_name = str(task.tags.get(QUEUE_TAG) or cfg.queue)
        priority = celery_priority(int(task.tags.get(PRIORITY_TAG, 0)), cfg.broker_is_redis)
        handle = InFlight(task, task_id=f"plait-{uuid.uuid4().hex}", queue=queue_name,
                          sent_wall=time.time(), queued_since=time.monotonic())
        with self.lock:
            self._live[handle.task_id] = handle
        if self._health is not None:
            self._health.poke(handle.queued_since + cfg.worker_wait_timeout)
        try:
            self.app.send_task(
                TASK_NAME,
                args=[data, {"stream": self._stream}],
                task_id=handle.task_id,
                queue=queue_name,
                priority=priority,
                retry=True,
                retry_policy=PUBLISH_RETRY,
                ignore_result=True,
                argsrepr=f"[{task.step_key!r} attempt {task.attempt}]",
                kwargsrepr="{}",
            )
        except Exception as exc:  # noqa: BLE001 - any publish failure loses the message
            self.give_up(handle, "lost", f"could not send the step to the broker at "
                         f"{safe_url(cfg.broker)}: {exc}")
        return handle

    def wait(self, handles: Sequence[StepHandle], timeout: float | None) -> list[StepOutcome]:
        """Outcomes of ``handles`` that arrived, once one did or ``timeout`` passed. The
        caller reads the reply stream itself while nobody else does (see the module doc)."""
        mine = [h for h in handles if isinstance(h, InFlight)]
        end = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            self._waiters += 1
        try:
            while True:
                with self.lock:
                    while True:
                        done = [h.outcome for h in mine if h.outcome is not None]
                        left = None if end is None else end - time.monotonic()
                        if done or (left is not None and left <= 0) or self._stopping.is_set():
                            return done
                        if not self._reading:
                            self._reading = True
                            break
                        # another thread reads: it notifies when it got something or is done
                        self.lock.wait(left)
                self._read_turn(READ_BLOCK_S if left is None else min(left, READ_BLOCK_S))
        finally:
            with self.lock:
                self._waiters -= 1
                self._last_wait_end = time.monotonic()

    def cancel(self, handle: StepHandle) -> None:
        if not isinstance(handle, InFlight):
            return
        with self.lock:
            self._live.pop(handle.task_id, None)
        self._abandon(handle)

    def run_finished(self, run_id: str) -> None:
        with self.lock:
            stale = [h for h in self._live.values() if h.task.run_id == run_id]
            for handle in stale:
                del self._live[handle.task_id]
        for handle in stale:
            self._abandon(handle)

    # ---- outcomes and giving up -------------------------------------------------------------

    def in_flight(self) -> list[InFlight]:
        with self.lock:
            return list(self._live.values())

    def _poke(self) -> None:
        """Wake the health check now: something changed that may move its next check."""
        if self._health is not None:
            self._health.poke()

    def finish(self, handle: InFlight, outcome: StepOutcome) -> bool:
        """Record the attempt's one outcome (caller holds ``_cond``)."""
        if handle.outcome is not None or self._live.get(handle.task_id) is not handle:
            return False
        handle.outcome = outcome
        del self._live[handle.task_id]
        self.lock.notify_all()
        return True

    def recover(self, handle: InFlight, outcome: StepOutcome) -> bool:
        """The attempt's outcome, found in its record when the stream lost it (health check)."""
        with self.lock:
            finished = self.finish(handle, outcome)
        if finished:
            self._wake_waiter()
        return finished

    def give_up(self, handle: InFlight, kind: str, message: str) -> None:
        with self.lock:
            outcome = StepOutcome.failed(handle.task, kind, message)  # type: ignore[arg-type]
            finished = self.finish(handle, outcome)
        if finished:
            log.warning("step %s attempt %d: %s", handle.task.step_key, handle.task.attempt, message)
            self._abandon(handle)
            self._wake_waiter()

    def _wake_waiter(self) -> None:
        """An outcome came from elsewhere than the stream: a ``wait`` blocked reading the
        stream would not see it before its read timed out, so give that read an entry."""
        if self._reading and self._turn_thread is not threading.current_thread():
            self._wake_reader("wake")

    def _abandon(self, handle: InFlight) -> None:
        """Make sure the attempt runs no more: settle it with an empty outcome record (a
        later delivery is skipped) and revoke it with SIGKILL (a running one is killed).
        Best effort: the coordinator fences its outcome anyway."""
        try:
            if self._admin is not None:
                self._admin.set(outcome_key(handle.task_id), "{}", ex=OUTCOME_TTL_S, nx=True)
        except redis.RedisError as exc:
            log.warning("could not settle task %s: %s", handle.task_id, exc)
        self._revokes.put(handle.task_id)

    def _revoke_loop(self) -> None:
        """Revokes off the coordinator's thread: a broadcast may block while the broker
        is unreachable."""
        while True:
            task_id = self._revokes.get()
            if task_id is None:
                return
            try:
                self.app.control.revoke(task_id, terminate=True, signal="SIGKILL")
            except Exception as exc:  # noqa: BLE001 - broker down: the outcome record holds
                log.warning("could not revoke task %s: %s", task_id, exc)

    # ---- the reply stream -------------------------------------------------------------------

    def _wake_reader(self, kind: str) -> None:
        """Return whoever blocks reading the stream, with an entry of ``kind``. If this
        fails, the read returns at its timeout."""
        if self._admin is not None:
            with contextlib.suppress(redis.RedisError):
                self._admin.xadd(self._stream, {"kind": kind, "task": "", "host": "", "pid": 0})

    def _read_loop(self) -> None:
        """The background reader: takes the read turn while nobody waits (see module doc)."""
        while True:
            with self.lock:
                while True:
                    if self._stopping.is_set():
                        return
                    idle_for = time.monotonic() - self._last_wait_end
                    if not self._reading and not self._waiters and idle_for >= IDLE_READ_AFTER_S:
                        self._reading = True
                        break
                    # a look every IDLE_READ_AFTER_S while others read: cheaper than being
                    # woken each time a wait returns
                    self._nobody_waits.wait(IDLE_READ_AFTER_S if self._reading or self._waiters
                                            else IDLE_READ_AFTER_S - idle_for)
            self._read_turn(READ_BLOCK_S)

    def _read_turn(self, block_s: float) -> None:
        """Read the stream once and act on what came, holding the read turn (so entries are
        handled in their order); then give the turn back."""
        self._turn_thread = threading.current_thread()
        try:
            reader = self._reader
            if reader is None:
                return
            try:
                replies = reader.read(block_s)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._read_failures += 1
                if self._read_failures == 1:
                    log.warning("reply stream at %s unreachable (%s); reconnecting",
                                safe_url(self.config.result_backend), exc)
                # reconnect backoff (a wait for Redis to come back, not for a result)
                self._stopping.wait(min(block_s, 0.05 * 2 ** min(self._read_failures, 5)))
                return
            if self._read_failures and self._health is not None:
                self._health.reconnected.set()  # it looks for a broker restart
                self._poke()
            self._read_failures = 0
            for reply in replies:
                if reply.kind not in ("stop", "wake"):
                    self._on_reply(reply)
        finally:
            self._turn_thread = None
            with self.lock:
                self._reading = False
                self.lock.notify_all()

    def _on_reply(self, reply: Reply) -> None:
        notices: list[StepEvent] = []
        event: StepEvent | None = None
        give_up: str | None = None
        with self.lock:
            handle = self._live.get(reply.task_id)
            if handle is None:
                return  # an attempt we no longer wait for
            number = 0
            if reply.kind in ("event", "outcome"):
                number = handle.deliveries.setdefault(reply.delivery, len(handle.deliveries))
            if reply.kind == "outcome":
                outcome = outcome_from_json(reply.body)
                if number:
                    events = [_redelivered(e, number) for e in outcome.events]
                    outcome = replace(outcome, events=events)
                self.finish(handle, outcome)
                return
            if reply.kind == "event":
                event = _redelivered(event_from_json(reply.body), number)
                if event.event_type is EventType.STEP_START:
                    self._started(handle, reply.host, reply.pid, event.timestamp)
            elif reply.kind == "lost":
                give_up, notices = self._worker_lost(handle, reply)
        if give_up is not None:
            self.give_up(handle, "crash", give_up)
        for item in ([event] if event else []) + notices:
            self.deliver(item)

    def _started(self, handle: InFlight, host: str, pid: int, when: float) -> None:
        handle.worker = (host, pid)
        handle.started_ts = when
        handle.suspect_since = None
        if self._health is not None:
            self._health.poke_started()

    def _worker_lost(self, handle: InFlight, reply: Reply) -> tuple[str | None, list[StepEvent]]:
        handle.redeliveries += 1
        limit = self.config.max_redeliveries
        where = (f"the process (pid {reply.body.get('pid')}) on worker {reply.host} running "
                 f"the step died: {reply.body.get('reason', '')}")
        if handle.redeliveries > limit:
            return (f"{where}; it was redelivered {limit} time(s) already, so this attempt "
                    "fails (raise execution.celery.max_redeliveries to allow more)"), []
        handle.worker = None
        handle.suspect_since = None
        handle.queued_since = time.monotonic()
        text = f"{where}; Celery requeued it (redelivery {handle.redeliveries} of {limit})"
        return None, [self._notice(handle, text, logging.WARNING)]

    def _notice(self, handle: InFlight, message: str, level: int) -> StepEvent:
        handle.notices += 1
        task = handle.task
        return StepEvent(EventType.LOG, task.step_key, task.attempt,
                         NOTICE_INDEX_BASE + handle.notices, time.time(), message, level,
                         {"celery_task_id": handle.task_id}, task.run_id)


def _redelivered(event: StepEvent, number: int) -> StepEvent:
    """An event of the ``number``-th redelivery of an attempt, indexed apart from the
    first delivery's; its STEP_START says so."""
    if not number:
        return event
    message = event.message
    if event.event_type is EventType.STEP_START:
        message = f"{message}, redelivered (delivery {number + 1})"
    return replace(event, index=event.index + number * DELIVERY_INDEX_STRIDE, message=message)


def absolute_pointer(pointer: str) -> str:
    """A ``path/file.py:job`` pointer made absolute, so a worker with another working
    directory finds the file (on the same machine or a shared path)."""
    path, sep, attr = pointer.rpartition(":")
    if not sep or "/" in attr or "\\" in attr:
        path, attr = pointer, ""
    if path.endswith(".py") or "/" in path or "\\" in path:
        path = os.path.abspath(path)
    return f"{path}:{attr}" if attr else path
