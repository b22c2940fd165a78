"""What the coordinator hears about Dask worker processes that exited or are stuck: the
``lost`` message of a step whose worker died says which process died and how, and the
coordinator's log says when plait restarted a worker to stop a canceled step.

Two plugins publish on ``EXITS_TOPIC``: a nanny's (``_reaper``) when its worker process
exits (pid, exit code, whether the nanny terminated it for memory), and a worker's
(``_stuck``) when it restarts to stop a canceled step that does not return (``restart``),
or cannot, having no nanny (``stuck``). Dask's ``KilledWorker`` names the worker's
address and pid; the nanny's notice travels another way and may arrive a moment later, so
the message waits for it briefly, and only for a worker that has a nanny.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client
    from plait.executors.base import StepTask

    from plait_dask._attempts import DaskStepHandle

logger = logging.getLogger(__name__)

EXITS_TOPIC = "plait-worker-exits"
NOTICE_WAIT_SECONDS = 2.0
"""How long a lost step's message waits for its worker's exit notice from the nanny."""
REMEMBERED = 512


@dataclass
class WorkerExit:
    worker: str
    pid: int | None
    exitcode: int | None = None
    exited: bool = False
    """The nanny reported the exit (``exitcode`` is its code; negative: a signal)."""
    memory: bool = False
    """The nanny terminated it for going over its memory limit."""
    stopped_for: str | None = None
    """The step attempt plait restarted the worker to stop (a description, or its key)."""
    after: float | None = None


class WorkerExits:
    """Exit notices of the cluster's worker processes, by (address, pid)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._exits: OrderedDict[tuple[str, int | None], WorkerExit] = OrderedDict()
        self._canceled: OrderedDict[str, str] = OrderedDict()
        self._watching = False

    def watch(self, client: Client) -> None:
        client.subscribe_topic(EXITS_TOPIC, self._on_notice)
        self._watching = True

    def canceled(self, handle: DaskStepHandle) -> None:
        """Remember a canceled attempt, to name it if its worker reports it stuck."""
        task = handle.task
        with self._cond:
            self._canceled[handle.key] = (
                f"step {task.step_key!r} (attempt {task.attempt + 1}) of run {task.run_id}")
            _trim(self._canceled)

    def lost_message(self, task: StepTask, last_worker: Any, address: str | None) -> str:
        """The message of an attempt lost because its worker died (``KilledWorker``)."""
        address = getattr(last_worker, "address", None) or address or "?"
        pid = getattr(last_worker, "pid", None)
        has_nanny = bool(getattr(last_worker, "nanny", None))
        wait = NOTICE_WAIT_SECONDS if has_nanny and self._watching else 0.0
        found = self._wait(address, pid, wait)
        process = f"worker process {pid}" if pid else "its worker process"
        return (
            f"Dask worker {address}: {process} {self._cause(found, has_nanny)} while running "
            f"step {task.step_key!r} (attempt {task.attempt + 1}); plait does not let Dask "
            "re-run it, the op's retry policy decides"
        )

    # ---- on the client's event loop ------------------------------------------------------

    def _on_notice(self, event: tuple[float, Any]) -> None:
        _, msg = event
        if not isinstance(msg, dict) or not isinstance(msg.get("worker"), str):
            return
        with self._cond:
            found = self._exits.setdefault((msg["worker"], msg.get("pid")),
                                           WorkerExit(msg["worker"], msg.get("pid")))
            _trim(self._exits)
            if "exitcode" in msg:
                found.exited = True
                found.exitcode = msg["exitcode"]
                found.memory = bool(msg.get("memory"))
            ours = None
            for kind in ("restart", "stuck"):
                if kind in msg:
                    ours = self._canceled.get(msg[kind])
                    if kind == "restart":
                        found.stopped_for = ours or msg[kind]
                        found.after = msg.get("after")
            self._cond.notify_all()
        if ours is None:
            return  # another client's step, or no news
        if "restart" in msg:
            logger.warning(
                "%s was canceled but its op still ran %gs later; Dask cannot stop a running "
                "thread, so plait restarted the Dask worker %s (pid %s) to stop it. Steps "
                "running on that worker fail as lost, and their retry policies decide",
                ours, msg.get("after") or 0, msg["worker"], msg.get("pid"))
        else:
            logger.warning(
                "%s was canceled but its op still runs on the Dask worker %s, which has no "
                "nanny to restart it: the op keeps one of that worker's threads until it "
                "returns (Dask cannot stop a running thread). Run workers under a nanny "
                "(`dask worker` without --no-nanny, or a LocalCluster with processes=True) "
                "to let plait restart them", ours, msg["worker"])

    # ---- on the coordinator's thread -----------------------------------------------------

    def _wait(self, address: str, pid: int | None, timeout: float) -> WorkerExit | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self._exits.get((address, pid))
                remaining = deadline - time.monotonic()
                if (found is not None and found.exited) or remaining <= 0:
                    if found is None:  # do not wait again for another step of this worker
                        found = self._exits.setdefault((address, pid), WorkerExit(address, pid))
                    found.exited = True
                    return found
                self._cond.wait(remaining)

    @staticmethod
    def _cause(found: WorkerExit | None, has_nanny: bool) -> str:
        from plait.executors._mp_process import death_cause

        if found is not None and found.stopped_for is not None:
            return (f"died with signal SIGKILL: plait restarted the worker to stop "
                    f"{found.stopped_for}, which was canceled but still ran "
                    f"{found.after or 0:g}s later (Dask cannot stop a running thread)")
        if found is not None and found.exitcode is not None:
            cause = death_cause(found.exitcode)
            if found.memory:
                cause += " (its nanny terminated it: it went over its memory limit)"
            return cause
        if has_nanny:
            return "died (its nanny reported no exit status)"
        return "died (the worker has no nanny to report its exit status)"


def _trim(mapping: OrderedDict) -> None:
    while len(mapping) > REMEMBERED:
        mapping.popitem(last=False)
