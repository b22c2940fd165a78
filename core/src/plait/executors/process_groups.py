"""Worker processes that lead their own process group, so that whatever a step started
(a command-line tool, a subprocess pool) can be killed with the process that ran it.

A worker process that is SIGKILLed mid-step (OOM, a user, a cancel) takes nothing with
it: its children are re-parented and run on. So each worker process makes itself a group
leader when it starts (``lead_own_group``), the op's children inherit the group, and
whoever watches the worker kills the group (``kill_group``) when it stops a step or sees
the worker die: the multiprocess pool (``_mp_worker`` / ``_mp_process``), a Celery
worker's main process (``plait_celery.tasks``) and a Dask nanny (``plait_dask._reaper``).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any


def lead_own_group(**_: Any) -> None:
    """In a new worker process: become the leader of a process group of its own. (Takes
    and ignores keyword arguments, so it can be a Celery signal handler.)"""
    with contextlib.suppress(OSError):  # a session leader already: its group is its own
        os.setpgid(0, 0)


def kill_group(pid: int, signum: int, *, alive: bool) -> bool:
    """Send ``signum`` to the process group that worker process ``pid`` leads; returns
    whether it was sent.

    ``alive``: the worker process has not been reaped yet, so whether it leads a group can
    be checked (a Celery solo or threads pool runs steps in the caller's own process). A
    reaped process cannot be asked; its pid stays reserved while its group has members, so
    the group it led is still the one with its number (an empty group: nothing to kill,
    ``ProcessLookupError``). The caller's own group is never signalled.
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
