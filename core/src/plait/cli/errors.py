"""Errors for people: bad input becomes one red paragraph and exit code 2, not a traceback.

What counts as bad input: every ``PlaitError`` (unknown job, invalid run config, unknown
run id, unknown executor...), a ``CommandError`` raised by a command, and file errors.
Anything else is a bug and keeps its traceback. ``PLAIT_TRACEBACK=1`` shows the
traceback of bad input too (for debugging plait itself).
"""

from __future__ import annotations

import os
import traceback

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
TRACEBACK_ENV = "PLAIT_TRACEBACK"


class CommandError(Exception):
    """Bad input a command found itself; the message is shown as it is."""


def explain(exc: BaseException) -> str | None:
    """The message to show for an error caused by the user's input, else None (a bug)."""
    from plait.errors import PlaitError

    if isinstance(exc, CommandError | PlaitError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    return None


def print_error(message: str, exc: BaseException | None = None) -> None:
    from rich.text import Text

    from plait.cli.output import stderr_console

    console = stderr_console()
    if exc is not None and os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        console.print(Text("".join(traceback.format_exception(exc)), style="dim"))
    console.print(Text.assemble(("Error: ", "bold red"), message), soft_wrap=True)
