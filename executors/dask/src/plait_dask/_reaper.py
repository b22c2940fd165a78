"""A nanny plugin: when its worker process exits, kill what the worker's steps started and
tell the coordinators how it exited.

A worker process that dies (SIGKILL, OOM, a step calling ``os._exit``) takes nothing
with it: the processes its steps started (command-line tools, subprocess pools) are
re-parented and run on. Under a nanny the worker leads a process group of its own
(``_stuck.StuckStepGuard.setup``), which those processes inherit; when the worker
process exits, this plugin SIGKILLs that group before the nanny starts a new worker.
(The multiprocess and Celery executors do the same with their worker processes.)

It also publishes ``{"worker", "pid", "exitcode", "memory"}`` on ``EXITS_TOPIC``, so that
a step lost with the worker says how it died (``_exits``): Dask's ``KilledWorker`` names
the worker, only its nanny knows the exit code.

The nanny has no hook for its worker's exit, so the plugin wraps two methods of this
nanny's objects (not of their classes): ``Nanny.instantiate`` (which creates the
``WorkerProcess`` on first start) and ``WorkerProcess.mark_stopped`` (called on the
nanny's event loop once the process was reaped, while its pid and exit code are still
known). ``teardown`` removes both. The pid of a reaped worker still names its group while
the group has members (Linux does not reuse it meanwhile); an empty group is nothing to kill.

Shipped by value like ``_fence``, so a nanny runs the plugin code of the plait-dask that
registered it; it may import plait, which every worker machine has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from distributed.diagnostics.plugin import NannyPlugin
from plait.executors.process_groups import kill_group

from plait_dask._exits import EXITS_TOPIC

logger = logging.getLogger(__name__)

PLUGIN_NAME = "plait-reaper-v1"
REPORT_TIMEOUT_SECONDS = 5.0


class WorkerReaper(NannyPlugin):
    idempotent = True  # one per nanny, however many plait clients register it
    name = PLUGIN_NAME

    def __init__(self) -> None:
        self.nanny: Any = None
        self._reports: set[asyncio.Task] = set()

    def setup(self, nanny: Any) -> None:
        self.nanny = nanny
        instantiate = nanny.instantiate

        async def instantiate_and_watch(*args: Any, **kwargs: Any) -> Any:
            try:
                return await instantiate(*args, **kwargs)
            finally:
                self._watch(nanny.process)

        nanny.instantiate = instantiate_and_watch
        self._watch(nanny.process)

    def teardown(self, nanny: Any) -> None:
        vars(nanny).pop("instantiate", None)
        if nanny.process is not None:
            vars(nanny.process).pop("mark_stopped", None)

    def _watch(self, worker_process: Any) -> None:
        if worker_process is None or "mark_stopped" in vars(worker_process):
            return
        mark_stopped = worker_process.mark_stopped

        def reap_and_mark_stopped() -> None:
            from distributed.core import Status

            proc = worker_process.process
            if worker_process.status != Status.stopped and proc is not None:
                with contextlib.suppress(Exception):  # the nanny must go on regardless
                    self._exited(proc.pid, proc.exitcode, worker_process.worker_address)
            mark_stopped()

        worker_process.mark_stopped = reap_and_mark_stopped

    def _exited(self, pid: int | None, exitcode: int | None, address: str | None) -> None:
        from distributed.core import Status

        if pid and kill_group(pid, signal.SIGKILL, alive=False):
            logger.info("killed what worker process %s left in its process group", pid)
        nanny = self.nanny
        if address is None or nanny.status not in (Status.running, Status.starting):
            return  # the nanny is closing: nobody waits for this worker
        memory = getattr(getattr(nanny, "memory_manager", None), "_last_terminated_pid", None) == pid
        msg = {"worker": address, "pid": pid, "exitcode": exitcode, "memory": memory}
        task = asyncio.ensure_future(self._report(msg))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _report(self, msg: dict) -> None:
        try:
            await asyncio.wait_for(self.nanny.scheduler.log_event(topic=EXITS_TOPIC, msg=msg),
                                   REPORT_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - the scheduler may be gone
            logger.debug("could not report the exit of worker %s: %s", msg["worker"], exc)
