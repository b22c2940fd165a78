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

It also truncates a finished run's live-event topic, which the scheduler would otherwise
keep (up to ``distributed.admin.low-level-log-length`` events) for the cluster's life.

This module is shipped to the scheduler by value (``cloudpickle.register_pickle_by_value``),
so the scheduler needs neither plait nor plait-dask installed. Keep it free of plait imports.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

PLUGIN_NAME = "plait-fence-v1"
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
        broker.truncate(CONTROL_TOPIC)
