"""The Celery executor's health check: it never waits for a step to finish (outcomes come
on the reply stream); it decides when an in-flight attempt can no longer finish.

Each in-flight attempt (``InFlight``) is *queued* (sent, no STEP_START yet) or *started*
(a STEP_START named the worker and process running it). A thread wakes when a check is
due, or when something happened (submit, STEP_START, reconnect, stop):

- started, every ``health_check_interval``: the worker's heartbeat
  (``plait_celery.heartbeat``) must still list the task. If not, its outcome record may
  hold what the stream lost; otherwise, after ``lost_after`` seconds without a
  redelivery, the attempt fails as ``lost``.
- queued, after ``worker_wait_timeout``: no live worker consumes its queue -> ``lost``
  ("no worker consumed queue X"). Some do, and (Redis broker) the queue is empty and no
  worker holds the task -> its message is gone -> ``lost``, after a second look. Else
  the workers are busy: look again one period later.
- after a reconnect, or with any check: a Redis broker that restarted lost every step
  sent before -> ``lost`` at once.

All reads are single Redis commands with socket timeouts, so a check never hangs.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import redis
from plait.executors.base import StepHandle, StepOutcome

from plait_celery.config import CeleryConfig, safe_url
from plait_celery.heartbeat import HEARTBEAT_INTERVAL_S, WorkerBeat

if TYPE_CHECKING:
    from plait_celery.fleet import BrokerView, FleetView

log = logging.getLogger("plait.celery")


@dataclass(eq=False)
class InFlight(StepHandle):
    """One attempt sent to the fleet, and what the executor knows of it."""

    task_id: str = ""
    queue: str = ""
    sent_wall: float = 0.0
    queued_since: float = 0.0
    worker: tuple[str, int] | None = None
    """(hostname, pid) of the process running it, from its STEP_START."""
    started_ts: float = 0.0
    """When the running delivery started, on the worker's clock."""
    suspect_since: float | None = None
    redeliveries: int = 0
    deliveries: dict[str, int] = field(default_factory=dict)
    notices: int = 0
    outcome: StepOutcome | None = None


class Owner(Protocol):
    """What the health check needs from the executor."""

    config: CeleryConfig
    lock: threading.Condition

    def in_flight(self) -> list[InFlight]: ...

    def recover(self, handle: InFlight, outcome: StepOutcome) -> bool: ...

    def give_up(self, handle: InFlight, kind: str, message: str) -> None: ...


class HealthCheck:
    def __init__(self, owner: Owner, fleet: FleetView, broker: BrokerView | None,
                 stopping: threading.Event) -> None:
        self.owner = owner
        self.config = owner.config
        self.fleet = fleet
        self.broker = broker
        self.stopping = stopping
        self.wake = threading.Event()
        self.reconnected = threading.Event()
        self._next_started_check = 0.0
        self._asleep_until = math.inf
        """When the thread wakes next on its own (monotonic); inf while it is awake."""

    def poke(self, due: float | None = None) -> None:
        """Something changed that may need a check by ``due`` (monotonic; None: now). The
        thread is woken only if it would sleep past that: steps start and end by the
        thousand, and each wake costs the coordinator a thread switch."""
        if due is None or due < self._asleep_until:
            self.wake.set()

    def poke_started(self) -> None:
        """A step started: its worker needs checking within ``health_check_interval``."""
        self.poke(max(time.monotonic(), self._next_started_check))

    def run(self) -> None:
        """The thread: a check whenever one is due, until ``stopping`` is set."""
        while not self.stopping.is_set():
            self._asleep_until = math.inf  # awake: every poke counts until it sleeps again
            try:
                self.check(time.monotonic())
            except Exception:  # noqa: BLE001 - a failed check must not end the health check
                log.exception("plait celery health check failed")
                if self.stopping.wait(1.0):
                    return
            # an engine health check on a bounded schedule, never a wait for completion
            delay = self._next_due()
            self._asleep_until = math.inf if delay is None else time.monotonic() + delay
            self.wake.wait(delay)
            self.wake.clear()

    def check(self, now: float) -> None:
        live = self.owner.in_flight()
        if self.reconnected.is_set() or any(self._due(h, now) for h in live):
            self.reconnected.clear()
            self._check_broker_restart(live)
        started = [h for h in live if h.worker is not None]
        if started and now >= self._next_started_check:
            self._next_started_check = now + self.config.health_check_interval
            self._check_started(started, now)
        self._check_queued([h for h in live if self._due(h, now)], now)

    def _next_due(self) -> float | None:
        live = self.owner.in_flight()
        due = [h.queued_since + self.config.worker_wait_timeout for h in live if h.worker is None]
        if any(h.worker is not None for h in live):
            due.append(self._next_started_check)
        return None if not due else max(0.01, min(due) - time.monotonic())

    def _due(self, handle: InFlight, now: float) -> bool:
        return handle.worker is None and now >= handle.queued_since + self.config.worker_wait_timeout

    def _beats(self) -> dict[str, WorkerBeat] | None:
        try:
            return self.fleet.workers()
        except redis.RedisError as exc:
            log.warning("health check: cannot read worker heartbeats: %s", exc)
            return None

    # ---- the broker ---------------------------------------------------------------------------

    def _check_broker_restart(self, live: list[InFlight]) -> None:
        if self.broker is None or not live:
            return
        try:
            restarted = self.broker.restarted_before()
        except redis.RedisError:
            return  # unreachable now: the queued and started checks bound the wait
        if restarted is None:
            return
        url = safe_url(self.config.broker)
        for handle in live:
            if handle.worker is None and handle.sent_wall <= restarted:
                self.owner.give_up(handle, "lost", f"the broker at {url} restarted after the "
                                   "step was sent, and lost it before a worker started it")

    # ---- started steps --------------------------------------------------------------------------

    def _check_started(self, started: list[InFlight], now: float) -> None:
        cfg = self.config
        beats = self._beats()
        for handle in started:
            with self.owner.lock:
                worker, since = handle.worker, handle.started_ts
            if worker is None or handle.outcome is not None:
                continue
            beat = beats.get(worker[0]) if beats is not None else None
            if beat is not None and (handle.task_id in beat.held or beat.time <= since):
                with self.owner.lock:
                    handle.suspect_since = None
                continue
            if beats is not None and self._recover_stored(handle):
                continue
            with self.owner.lock:
                if handle.worker != worker:
                    continue  # redelivered meanwhile
                if handle.suspect_since is None:
                    handle.suspect_since = now
                overdue = now - handle.suspect_since >= cfg.lost_after
            if overdue:
                why = ("cannot be asked (the backend Redis is unreachable)" if beats is None
                       else "stopped sending heartbeats" if beat is None
                       else "no longer holds it")
                self.owner.give_up(handle, "lost", (
                    f"worker {worker[0]} (pid {worker[1]}) {why}, and the step was not "
                    f"redelivered within {cfg.lost_after:g}s (execution.celery.lost_after)"
                ))

    def _recover_stored(self, handle: InFlight) -> bool:
        """The outcome from its record, when the reply stream lost it."""
        from plait.executors.wire import outcome_from_json

        try:
            stored = self.fleet.stored_outcome(handle.task_id)
        except (redis.RedisError, ValueError):
            return False
        if stored is None:
            return False
        return self.owner.recover(handle, outcome_from_json(stored))

    # ---- queued steps ---------------------------------------------------------------------------

    def _check_queued(self, overdue: list[InFlight], now: float) -> None:
        if not overdue:
            return
        cfg = self.config
        beats = self._beats()
        if beats is None:
            for handle in overdue:
                self.owner.give_up(handle, "lost", (
                    f"no worker started the step within {cfg.worker_wait_timeout:g}s, and the "
                    f"backend Redis at {safe_url(cfg.result_backend)} does not answer"
                ))
            return
        consumed = {queue for beat in beats.values() for queue in beat.queues}
        held = {task_id for beat in beats.values() for task_id in beat.held}
        for handle in overdue:
            if handle.queue not in consumed:
                self.owner.give_up(handle, "lost", (
                    f"no worker consumed queue {handle.queue!r} within "
                    f"{cfg.worker_wait_timeout:g}s (execution.celery.worker_wait_timeout); "
                    f"workers online: {', '.join(sorted(beats)) or 'none'}. Start one: "
                    f"plait celery worker --broker {safe_url(cfg.broker)} -Q {handle.queue}"
                ))
            elif handle.task_id not in held and self._queue_empty(handle.queue):
                self._message_missing(handle, now)
            else:
                with self.owner.lock:  # the workers are busy: look again one period later
                    handle.queued_since = now
                    handle.suspect_since = None

    def _queue_empty(self, queue_name: str) -> bool:
        if self.broker is None:
            return False  # cannot tell on this broker: keep waiting while workers consume
        try:
            return self.broker.queue_length(queue_name) == 0
        except redis.RedisError:
            return False

    def _message_missing(self, handle: InFlight, now: float) -> None:
        """Nobody holds the step and its queue is empty: the message was lost. Look twice,
        a heartbeat apart, before giving up (a worker may have just taken it)."""
        cfg = self.config
        settle = max(cfg.health_check_interval, 2 * HEARTBEAT_INTERVAL_S)
        with self.owner.lock:
            first = handle.suspect_since is None
            if first:
                handle.suspect_since = now
                handle.queued_since = now - cfg.worker_wait_timeout + settle  # look again soon
            confirmed = not first and now - handle.suspect_since >= settle
        if confirmed:
            self.owner.give_up(handle, "lost", (
                f"the broker at {safe_url(cfg.broker)} no longer has the step's message in "
                f"queue {handle.queue!r} and no worker holds it (was the broker restarted?)"
            ))
