"""Loading the job(s) a TARGET names (``path/file.py[:job]`` or ``pkg.module[:job]``),
with errors that say what went wrong in the user's code instead of a traceback."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from plait.cli.errors import CommandError

if TYPE_CHECKING:
    from plait._defs.job import JobDefinition

_PLAIT_DIR = str(Path(__file__).resolve().parents[1])


def load_target(target: str) -> JobDefinition:
    """The job TARGET names (the only job of its module when no ``:job`` is given)."""
    from plait._load import load_job

    _cwd_importable()
    try:
        return load_job(target)
    except Exception as exc:  # noqa: BLE001 - whatever the user's module raised, explained
        raise CommandError(_explain(target, exc)) from exc


def jobs_at(target: str) -> dict[str, JobDefinition]:
    """Every job TARGET's module defines (just the one when TARGET names it)."""
    from plait._load import _has_attr, jobs_in

    if _has_attr(target):
        job = load_target(target)
        return {target.rsplit(":", 1)[1]: job}
    _cwd_importable()
    try:
        return jobs_in(target)
    except Exception as exc:  # noqa: BLE001
        raise CommandError(_explain(target, exc)) from exc


def _cwd_importable() -> None:
    # `plait run pkg.jobs` from a project folder should find pkg, as `python -m` would
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _explain(target: str, exc: Exception) -> str:
    from plait.errors import PlaitDefinitionError

    if isinstance(exc, PlaitDefinitionError) and _raised_by_loader(exc):
        return str(exc)  # no such file / module / job: plait's own message says it all
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}, line {exc.lineno}" if exc.filename else "unknown place"
        return f"cannot load {target!r}: syntax error in {where}: {exc.msg}"
    what = str(exc) if isinstance(exc, PlaitDefinitionError) else f"{type(exc).__name__}: {exc}"
    where = _user_frame(exc)
    return f"cannot load {target!r}: importing it raised {what}" + (f" ({where})" if where else "")


def _raised_by_loader(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].filename.endswith(os.path.join("plait", "_load.py"))


def _user_frame(exc: BaseException) -> str | None:
    """Where in the user's code the error was raised (the innermost frame outside plait
    and the import machinery)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        name = frame.filename
        if name.startswith(_PLAIT_DIR) or name.startswith("<frozen"):
            continue
        return f"{name}, line {frame.lineno}, in {frame.name}"
    return None
