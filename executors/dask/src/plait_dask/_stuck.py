"""A worker plugin that restarts a worker whose canceled plait step does not return.

Dask cannot stop a task's thread: a step that plait canceled (it ran past its op timeout,
or its run was canceled) runs on and keeps its worker thread, so whatever waits for a
thread there (the step's own retry, on a one-thread worker) waits behind it, forever for
a hung op. This plugin watches the plait tasks the scheduler releases while they execute;
one still running ``restart_after`` seconds later (``plait.restart-stuck-worker-after`` in
the worker's Dask config, default ``RESTART_AFTER_SECONDS``; ``false`` turns it off) makes
the worker restart:

1. it pauses (starts no other task) and tells the scheduler which plait tasks assigned to
   it have not started (the ``_fence`` plugin then lets Dask move those to another worker
   instead of failing them: they never ran), and the coordinators why it restarts
   (``EXITS_TOPIC``: they log it and name the stuck step in the lost steps' messages);
2. it SIGKILLs its process group: the stuck op, the processes it started, and any other
   step still running on this worker, which fails as ``lost`` like on any worker death
   (its op's RetryPolicy decides). Its nanny starts a new worker process.

A worker without a nanny (``dask worker --no-nanny``, ``LocalCluster(processes=False)``)
would not come back, so it logs a warning, tells the coordinators, and leaves the op
running. Under a nanny the worker also leads a process group of its own from the start,
so that the nanny's ``_reaper`` plugin can kill what a step started when the worker dies.

Shipped by value like ``_fence``, so a worker runs the plugin code of the plait-dask that
registered it; it may import plait, which every worker has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin
from plait.executors.process_groups import lead_own_group

from plait_dask._exits import EXITS_TOPIC
from plait_dask._fence import CONTROL_TOPIC, KEY_PREFIX

logger = logging.getLogger(__name__)

PLUGIN_NAME = "plait-stuck-step-v1"
RESTART_AFTER_CONFIG = "plait.restart-stuck-worker-after"
RESTART_AFTER_SECONDS = 2.0
"""How long a canceled step may take to return before its worker restarts: a step that
returns on its own meanwhile (it was just finishing) costs nobody anything."""
SCHEDULER_TIMEOUT_SECONDS = 5.0
NOT_STARTED = frozenset({"waiting", "ready", "constrained"})
"""Worker states of a task assigned to this worker that has not started."""


def _ours(key: Any) -> bool:
    return isinstance(key, str) and key.startswith(KEY_PREFIX)


def _address(worker: Any) -> str:
    """The address the scheduler knows the worker by."""
    return worker.contact_address or worker.address


def kill_own_group() -> None:
    pid = os.getpid()
    with contextlib.suppress(OSError):
        if os.getpgid(0) == pid:
            os.killpg(pid, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)


def restart_after_seconds() -> float | None:
    """``plait.restart-stuck-worker-after`` from the worker's Dask config (e.g. the
    environment variable ``DASK_PLAIT__RESTART_STUCK_WORKER_AFTER=10``); None: never."""
    import dask

    value = dask.config.get(RESTART_AFTER_CONFIG, RESTART_AFTER_SECONDS)
    if value is None or value is False or str(value).strip().lower() in ("false", "no", "off", "none", ""):
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        logger.warning("%s must be a number of seconds or false, not %r; using %gs",
                       RESTART_AFTER_CONFIG, value, RESTART_AFTER_SECONDS)
        return RESTART_AFTER_SECONDS


class StuckStepGuard(WorkerPlugin):
    idempotent = True  # one per worker, however many plait clients register it
    name = PLUGIN_NAME

    def __init__(self) -> None:
        self.worker: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.restart_after: float | None = None
        self.restarting = False
        self.warned: set[str] = set()
        self._tasks: set[asyncio.Task] = set()

    def setup(self, worker: Any) -> None:
        self.worker = worker
        self.loop = asyncio.get_running_loop()
        self.restart_after = restart_after_seconds()
        if worker.nanny:  # without a nanny it runs in a process that is not its own
            lead_own_group()

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        # a plait task released while it executes: its thread runs on, state "cancelled"
        if (finish == "released" and start in ("executing", "long-running") and _ours(key)
                and self.restart_after is not None and self.loop is not None):
            self.loop.call_soon_threadsafe(self.loop.call_later, self.restart_after, self._check, key)

    def _check(self, key: str) -> None:
        from distributed.core import Status

        worker = self.worker
        ts = worker.state.tasks.get(key)
        if ts is None or ts.state != "cancelled" or self.restarting:
            return  # it returned meanwhile
        if worker.status not in (Status.running, Status.paused):
            return  # closing already
        if not worker.nanny:
            if key not in self.warned:
                self.warned.add(key)
                logger.warning(
                    "plait canceled step attempt %s %gs ago, but its op still runs; Dask "
                    "cannot stop a running thread and this worker has no nanny to restart "
                    "it, so the op keeps one of its threads until it returns. Run workers "
                    "under a nanny (`dask worker` without --no-nanny, LocalCluster with "
                    "processes=True) to let plait restart them", key, self.restart_after)
                worker.log_event(EXITS_TOPIC, {"worker": _address(worker), "pid": os.getpid(),
                                               "stuck": key, "after": self.restart_after})
            return
        self.restarting = True
        task = asyncio.ensure_future(self._restart(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restart(self, key: str) -> None:
        from distributed.core import Status

        worker = self.worker
        logger.warning(
            "plait canceled step attempt %s %gs ago, but its op still runs (Dask cannot stop "
            "a running thread): restarting this worker to stop it", key, self.restart_after)
        try:
            worker.status = Status.paused  # no task starts from here on
            spared = self._not_started()
            await self._tell_scheduler([CONTROL_TOPIC, EXITS_TOPIC], {
                "worker": _address(worker), "pid": os.getpid(), "restart": key,
                "after": self.restart_after, "spare": sorted(spared)})
            # once more for tasks assigned before the scheduler saw the pause
            late = self._not_started() - spared
            if late:
                await self._tell_scheduler(CONTROL_TOPIC, {"worker": _address(worker),
                                                           "spare": sorted(late)})
        except Exception as exc:  # noqa: BLE001 - the scheduler may be gone: stop the op anyway
            logger.warning("could not tell the scheduler before restarting (%s: %s)",
                           type(exc).__name__, exc)
        finally:
            kill_own_group()

    def _not_started(self) -> set[str]:
        return {key for key, ts in self.worker.state.tasks.items()
                if _ours(key) and ts.state in NOT_STARTED}

    async def _tell_scheduler(self, topic: str | list[str], msg: dict) -> None:
        """Publish ``msg`` and await the scheduler's reply: when it returns, the fence has
        handled it, before the scheduler learns of this worker's death."""
        await asyncio.wait_for(self.worker.scheduler.log_event(topic=topic, msg=msg),
                               SCHEDULER_TIMEOUT_SECONDS)
