"""Consoles and the small formats every command shares (times, durations, statuses).

Not on a terminal (a pipe, a CI log) output is plain lines without colour or live
display, and wide enough that messages are not wrapped in the middle.
"""

from __future__ import annotations

import os
import time
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

PIPE_WIDTH = 200

STATUS_STYLES = {
    "SUCCESS": "green",
    "succeeded": "green",
    "reused": "cyan",
    "FAILURE": "red",
    "failed": "red",
    "CANCELED": "yellow",
    "canceled": "yellow",
    "skipped": "dim",
    "STARTED": "blue",
    "running": "blue",
}


def _console(stderr: bool) -> Console:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


@cache
def stdout_console() -> Console:
    return _console(stderr=False)


@cache
def stderr_console() -> Console:
    return _console(stderr=True)


def clock(timestamp: float | None) -> str:
    """``HH:MM:SS`` local time."""
    return "-" if timestamp is None else time.strftime("%H:%M:%S", time.localtime(timestamp))


def date_time(timestamp: float | None) -> str:
    """``YYYY-MM-DD HH:MM:SS`` local time."""
    return "-" if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def styled_status(status: str) -> tuple[str, str]:
    """``(text, style)`` for a run or step status, for ``Text.assemble``."""
    return status, STATUS_STYLES.get(status, "")
