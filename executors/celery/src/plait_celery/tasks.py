"""The Celery task every plait worker runs, and what the worker's main process reports.

``run_step`` receives a step task as JSON (``plait.executors.wire``), loads the job from
its code pointer (cached per pool process in a ``WorkerState``), runs it through
``plait.execute_step`` and sends live events and the outcome to the coordinator's reply
stream (``plait_celery.replies``). Nothing from the broker is ever unpickled.

``PlaitRequest`` runs in the worker's main process: when a pool process dies mid-step
(SIGKILL, OOM), Celery requeues the message (``task_reject_on_worker_lost``); the
request first tells the coordinator, which counts redeliveries and fails the attempt
as ``crash`` once they exceed ``max_redeliveries`` (a step that kills its process every
time would otherwise be redelivered forever).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import replace
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import Task
from celery.worker.request import Request
from plait._run.step import WorkerState, execute_step
from plait.events import EventType, StepEvent
from plait.executors.wire import event_to_json, outcome_to_json, task_from_json

from plait_celery.replies import OUTCOME_PUBLISH_DEADLINE_S, ReplyPublisher

TASK_NAME = "plait.run_step"

_state = WorkerState()
_publishers: dict[str, ReplyPublisher] = {}


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


def run_step(self: Task, task_data: dict[str, Any], reply: dict[str, Any]) -> None:
    """Run one step attempt described by JSON ``task_data``; report to ``reply['stream']``."""
    task_id = self.request.id
    host = self.request.hostname or ""
    stream = reply["stream"]
    pub = publisher_for(self)
    if pub.is_settled(task_id):
        return None  # already ended, or given up on: nobody waits for this delivery
    delivery = uuid.uuid4().hex[:12]
    where = {"worker": host, "pid": os.getpid(), "celery_task_id": task_id,
             "redelivered": bool((self.request.delivery_info or {}).get("redelivered"))}

    def emit(event: StepEvent) -> None:
        pub.send(stream, "event", task_id, host, event_to_json(_with_worker(event, where)),
                 delivery=delivery)

    outcome = execute_step(task_from_json(task_data), emit, _state)
    outcome = replace(outcome, events=[_with_worker(e, where) for e in outcome.events])
    body = outcome_to_json(outcome)
    pub.send(stream, "outcome", task_id, host, body, delivery=delivery,
             deadline_s=OUTCOME_PUBLISH_DEADLINE_S)


class PlaitRequest(Request):
    """Celery's request, plus a ``lost`` reply when the pool process running it died."""

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        exc = getattr(exc_info.exception, "exc", exc_info.exception)
        revoked = getattr(self, "_already_revoked", False) or getattr(self, "_already_cancelled", False)
        if isinstance(exc, WorkerLostError | SystemExit) and not revoked:
            self._report_lost(exc)
        return super().on_failure(exc_info, send_failed_event, return_ok)

    def _report_lost(self, exc: BaseException) -> None:
        args = self.args or []
        reply = args[1] if len(args) > 1 and isinstance(args[1], dict) else None
        if not reply or "stream" not in reply:
            return
        body = {"reason": f"{type(exc).__name__}: {exc}", "pid": self.worker_pid}
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
