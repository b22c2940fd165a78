"""The run's event recorder: numbers events, keeps them, writes them to storage in batches.

Events arrive from the coordinator thread (outcomes, run and step transitions) and from
executor threads (live logs while a step runs). The recorder serialises both under one
lock, drops an event it has already recorded (same step, attempt and index: a log that
came live and again with the outcome) and drops live events of attempts the coordinator
no longer waits for (a timed-out or duplicate attempt).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from plait._storage.base import RunStorage
from plait.events import Event, EventType, StepEvent

log = logging.getLogger("plait.run")

FLUSH_EVERY_EVENTS = 1000
FLUSH_DELAY_SECONDS = 0.1
"""An event reaches storage at most this long after it was recorded (the coordinator
wakes for it): writing once per loop turn cost a transaction per finished step."""


class RunRecorder:
    def __init__(
        self,
        run_id: str,
        storage: RunStorage,
        listeners: Iterable[Callable[[Event], None]] = (),
        on_step_start: Callable[[str, int], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.storage = storage
        self.events: list[Event] = []
        self._listeners = list(listeners)
        self._on_step_start = on_step_start
        self._lock = threading.RLock()
        self._accepting: set[tuple[str, int]] = set()
        self._seen: set[tuple[str, int, int]] = set()
        self._unflushed: list[Event] = []
        self._flush_due = 0.0

    def _append(self, event_type: EventType, *, step_key: str | None, message: str, level: int,
                data: dict[str, Any], attempt: int | None, timestamp: float | None = None) -> Event:
        event = Event(self.run_id, len(self.events) + 1, timestamp or time.time(), event_type,
                      step_key, level, message, data, attempt)
        self.events.append(event)
        if not self._unflushed:
            self._flush_due = time.monotonic() + FLUSH_DELAY_SECONDS
        self._unflushed.append(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a broken callback must not fail or corrupt the run
                log.exception("on_event callback %r failed on event #%d %s", listener, event.seq,
                              event.event_type.value)
        if len(self._unflushed) >= FLUSH_EVERY_EVENTS:
            self._flush_locked()
        return event

    def record(self, event_type: EventType, message: str = "", *, step_key: str | None = None,
               level: int = 20, data: dict[str, Any] | None = None, attempt: int | None = None) -> Event:
        """An event decided by the coordinator (run start/end, failure, retry, skip)."""
        with self._lock:
            return self._append(event_type, step_key=step_key, message=message, level=level,
                                data=data or {}, attempt=attempt)

    def accept(self, step_key: str, attempt: int) -> None:
        with self._lock:
            self._accepting.add((step_key, attempt))

    def stop_accepting(self, step_key: str, attempt: int) -> None:
        with self._lock:
            self._accepting.discard((step_key, attempt))

    def step_events(self, events: Iterable[StepEvent], live: bool = False) -> None:
        """Events a step produced; each is recorded once, and only for a current attempt."""
        with self._lock:
            for se in events:
                ident = (se.step_key, se.attempt, se.index)
                if ident in self._seen or (se.step_key, se.attempt) not in self._accepting:
                    continue
                self._seen.add(ident)
                if se.event_type is EventType.STEP_START and self._on_step_start:
                    self._on_step_start(se.step_key, se.attempt)
                self._append(se.event_type, step_key=se.step_key, message=se.message,
                             level=se.level, data=se.data, attempt=se.attempt, timestamp=se.timestamp)
            if live and self._unflushed and time.monotonic() >= self._flush_due:
                self._flush_locked()

    def live(self, event: StepEvent) -> None:
        """Entry point for executors' live events (any thread)."""
        if event.run_id and event.run_id != self.run_id:
            return
        self.step_events((event,), live=True)

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def flush_due_in(self) -> float | None:
        """Seconds until unflushed events must be written; None if there are none."""
        with self._lock:
            return self._flush_due - time.monotonic() if self._unflushed else None

    def flush_if_due(self) -> None:
        with self._lock:
            if self._unflushed and time.monotonic() >= self._flush_due:
                self._flush_locked()

    def _flush_locked(self) -> None:
        if self._unflushed:
            batch, self._unflushed = self._unflushed, []
            self.storage.append_events(batch)
