"""A scheduler plugin that stops Dask from silently re-running a plait step.

When a worker dies, Dask reschedules the tasks it was processing on other workers until a
task has been involved in ``allowed-failures`` deaths. A plait step has side effects and
its own retry policy, so plait wants the first death reported instead: the plugin marks
plait tasks as already "suspicious" up to the limit when they enter the scheduler, so the
first death of their worker errs them with ``KilledWorker`` (the executor reports that as
a ``lost`` attempt and the coordinator's RetryPolicy decides). Other tasks on the cluster
keep Dask's behaviour.

A worker that leaves gracefully (retired, scaled down) does not count as a death: Dask
moves its tasks elsewhere and plait accepts the outcome of that run of the attempt. (The
plugin cannot veto that move: Dask decides it before any plugin hook runs.)

When plait restarts a worker to stop a canceled step that does not return (``_stuck``),
the worker first names the plait tasks assigned to it that have not started (``spare`` on
``CONTROL_TOPIC``): the plugin takes those one step back from the limit, so that this
death moves them to another worker instead of failing them (they never ran); the next
death fails them as before.

It also truncates a finished run's live-event topic, which the scheduler would otherwise
keep (up to ``distributed.admin.low-level-log-length`` events) for the cluster's life.

This module is shipped to the scheduler by value (``cloudpickle.register_pickle_by_value``),
so the scheduler needs neither plait nor plait-dask installed. Keep it free of plait imports.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

PLUGIN_NAME = "plait-fence-v2"
KEY_PREFIX = "plait-"
CONTROL_TOPIC = "plait-control"


def _ours(key: Any) -> bool:
    return isinstance(key, str) and key.startswith(KEY_PREFIX)


class PlaitFence(SchedulerPlugin):
    idempotent = True  # one per scheduler, however many plait clients register it

    def __init__(self) -> None:
        self.scheduler: Any = None

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def update_graph(self, scheduler: Any, *, tasks: Any = (), **kwargs: Any) -> None:
        limit = scheduler.allowed_failures
        for key in tasks:
            if _ours(key):
                ts = scheduler.tasks.get(key)
                if ts is not None:
                    ts.suspicious = max(ts.suspicious, limit)

    def log_event(self, topic: str, msg: Any) -> None:
        if topic != CONTROL_TOPIC or not isinstance(msg, dict) or self.scheduler is None:
            return
        broker = getattr(self.scheduler, "_broker", None)
        if broker is None:
            return
        done = msg.get("truncate")
        if isinstance(done, str) and done.startswith(KEY_PREFIX):
            broker.truncate(done)
        self._spare(msg.get("spare"), msg.get("worker"))
        broker.truncate(CONTROL_TOPIC)

    def _spare(self, keys: Any, worker: Any) -> None:
        if not isinstance(keys, (list, tuple)) or not keys:
            return
        limit = self.scheduler.allowed_failures
        for key in keys:
            ts = self.scheduler.tasks.get(key) if _ours(key) else None
            ws = None if ts is None else ts.processing_on
            if ws is not None and ws.address == worker:
                ts.suspicious = min(ts.suspicious, limit - 1)
