"""The Celery task every plait worker runs, and what the worker's main process reports.

``run_step`` receives a step task as JSON (``plait.executors.wire``), loads the job from
its code pointer (cached per pool process in a ``WorkerState``), runs it through
``plait.execute_step`` and sends live events and the outcome to the coordinator's reply
stream (``plait_celery.replies``). Nothing from the broker is ever unpickled.

An attempt the coordinator gave up on (cancel, timeout, lost) or that another delivery
already finished is *settled* (its outcome record exists): ``execute_step`` checks that
before storing outputs (``AttemptSettled``), so such an attempt stores nothing more even
where no signal stops it (the threads and solo pools, a revoke that never arrived).

``PlaitRequest`` runs in the worker's main process: when a pool process dies mid-step
(SIGKILL, OOM), it kills what the step started (``plait.executors.process_groups``) and
Celery requeues the message (``task_reject_on_worker_lost``); the request first tells the
coordinator, which counts redeliveries and fails the attempt as ``crash`` once they
exceed ``max_redeliveries`` (a step that kills its process every time would otherwise be
redelivered forever). A revoke with ``terminate`` signals the pool process's whole group.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
import uuid
from dataclasses import replace
from typing import Any

from billiard.common import TERM_SIGNAME
from billiard.exceptions import WorkerLostError
from celery import Task, signals
from celery.platforms import signals as platform_signals
from celery.worker import state as worker_state
from celery.worker.request import Request
from plait._run.step import WorkerState, execute_step
from plait.events import EventType, StepEvent
from plait.executors.process_groups import kill_group, lead_own_group
from plait.executors.wire import event_to_text, outcome_to_text, task_from_json

from plait_celery.replies import OUTCOME_PUBLISH_DEADLINE_S, ReplyPublisher

TASK_NAME = "plait.run_step"

_state = WorkerState()
_publishers: dict[str, ReplyPublisher] = {}

signals.worker_process_init.connect(lead_own_group, weak=False)


def publisher_for(task: Task) -> ReplyPublisher:
    """This process's publisher to the app's result-backend Redis."""
    url = task.app.conf.result_backend
    pub = _publishers.get(url)
    if pub is None:
        timeout = float(task.app.conf.broker_connection_timeout or 5.0)
        pub = _publishers[url] = ReplyPublisher(url, timeout)
    return pub


def _with_worker(event: StepEvent, where: dict[str, Any]) -> StepEvent:
    if event.event_type is EventType.STEP_START:
        return replace(event, data={**event.data, **where})
    return event


OUTPUT_BURST_S = 0.005
"""A "not settled" answer serves the outputs an op stores within this long after it (a
dynamic op storing many small outputs asks once per burst, not once per output)."""


class AttemptSettled:
    """Quacks like the ``threading.Event`` that ``execute_step`` checks before storing an
    output: set once this worker saw the task revoked, or its outcome record exists (the
    coordinator gave up on the attempt, or another delivery of it finished first). Redis
    is asked before the first output the op stores, so an attempt abandoned while its op
    ran stores nothing; then once per ``OUTPUT_BURST_S``."""

    def __init__(self, pub: ReplyPublisher, task_id: str) -> None:
        self._pub = pub
        self._task_id = task_id
        self._set = False
        self._answered = -math.inf

    def before_start(self) -> bool:
        """Whether the task is settled already (asked of Redis; its answer is not reused)."""
        self._set = self._pub.is_settled(self._task_id)
        return self._set

    def is_set(self) -> bool:
        if self._set or self._task_id in worker_state.revoked:
            self._set = True
        elif time.monotonic() - self._answered >= OUTPUT_BURST_S:
            self._set = self._pub.is_settled(self._task_id)
            self._answered = time.monotonic()
        return self._set


def run_step(self: Task, task_data: dict[str, Any], reply: dict[str, Any]) -> None:
    """Run one step attempt described by JSON ``task_data``; report to ``reply['stream']``."""
    task_id = self.request.id
    host = self.request.hostname or ""
    stream = reply["stream"]
    pub = publisher_for(self)
    settled = AttemptSettled(pub, task_id)
    if settled.before_start():
        return None  # already ended, or given up on: nobody waits for this delivery
    delivery = uuid.uuid4().hex[:12]
    where = {"worker": host, "pid": os.getpid(), "celery_task_id": task_id,
             "redelivered": bool((self.request.delivery_info or {}).get("redelivered"))}

    def emit(event: StepEvent) -> None:
        pub.post(stream, "event", task_id, host, event_to_text(_with_worker(event, where)),
                 delivery=delivery)

    outcome = execute_step(task_from_json(task_data), emit, _state, settled)  # type: ignore[arg-type]
    outcome = replace(outcome, events=[_with_worker(e, where) for e in outcome.events])
    pub.send(stream, "outcome", task_id, host, outcome_to_text(outcome), delivery=delivery,
             deadline_s=OUTCOME_PUBLISH_DEADLINE_S)


class PlaitRequest(Request):
    """Celery's request, plus a ``lost`` reply when the pool process running it died, and
    signals that reach the pool process's whole process group (what the step started)."""

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        exc = getattr(exc_info.exception, "exc", exc_info.exception)
        if isinstance(exc, WorkerLostError) and self.worker_pid:
            # the pool process is gone; what its step started is not (before the report:
            # once the coordinator hears of the loss, the step's processes are gone too)
            kill_group(self.worker_pid, signal.SIGKILL, alive=False)
        revoked = getattr(self, "_already_revoked", False) or getattr(self, "_already_cancelled", False)
        if isinstance(exc, WorkerLostError | SystemExit) and not revoked:
            self._report_lost(exc)
        return super().on_failure(exc_info, send_failed_event, return_ok)

    def terminate(self, pool: Any, signal: Any = None) -> None:
        self._signal_group(signal)
        super().terminate(pool, signal)

    def cancel(self, pool: Any, signal: Any = None, emit_retry: bool = True) -> None:
        self._signal_group(signal)
        super().cancel(pool, signal, emit_retry)

    def _signal_group(self, signal_name: Any) -> None:
        """Signal the running step's pool process and all it started (Celery itself
        signals the pool process alone)."""
        if self.time_start and self.worker_pid:
            kill_group(self.worker_pid, platform_signals.signum(signal_name or TERM_SIGNAME),
                       alive=True)

    def _report_lost(self, exc: BaseException) -> None:
        args = self.args or []
        reply = args[1] if len(args) > 1 and isinstance(args[1], dict) else None
        if not reply or "stream" not in reply:
            return
        body = json.dumps({"reason": f"{type(exc).__name__}: {exc}", "pid": self.worker_pid})
        # if this fails, the health check finds the step anyway
        with contextlib.suppress(Exception):
            publisher_for(self.task).send(reply["stream"], "lost", self.id, self.hostname or "", body)


class PlaitTask(Task):
    """Base of ``run_step``: reports a lost pool process (``PlaitRequest``) and stores no
    Celery result (the outcome goes to the reply stream and its record). Acks-late and
    reject-on-worker-lost come from the app's config (``plait_celery.config``)."""

    Request = PlaitRequest
    ignore_result = True
    typing = False
