"""Each prefork pool process leads its own process group, so that whatever a step started
(a command-line tool, a subprocess pool) can be killed with it.

A pool process that is SIGKILLed mid-step (OOM, a user, a revoke with ``terminate``)
takes nothing with it: its children are re-parented and run on. So the pool process makes
itself a group leader when it starts (``lead_own_group``, on ``worker_process_init``), the
op's children inherit the group, and the worker's main process kills the group
(``kill_group``) when it terminates a running step or learns that its pool process died
(``plait_celery.tasks.PlaitRequest``). The multiprocess executor does the same with its
worker processes (``plait.executors._mp_process``).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any


def lead_own_group(**_: Any) -> None:
    """In a new pool process: become the leader of a process group of its own."""
    with contextlib.suppress(OSError):  # a session leader already: its group is its own
        os.setpgid(0, 0)


def kill_group(pid: int, signum: int, *, alive: bool) -> bool:
    """Send ``signum`` to the process group that pool process ``pid`` leads; returns
    whether it was sent.

    ``alive``: the pool process has not been reaped yet, so whether it leads a group can be
    checked (it does not under the solo and threads pools, where ``pid`` is the worker's
    own). A reaped pool process cannot be asked; its pid stays reserved while its group has
    members, so the group it led is still the one with its number (an empty group: nothing
    to kill, ``ProcessLookupError``). The worker's own group is never signalled.
    """
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        if pid == os.getpgid(0) or (alive and os.getpgid(pid) != pid):
            return False
        os.killpg(pid, signum)
        return True
    except (ProcessLookupError, PermissionError):
        return False
