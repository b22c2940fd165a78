"""Executors by name, the fsspec-registry way: a private table of lazy ``module:Class``
names with install hints, merged with the ``plait.executors`` entry points, so that
``import plait`` imports no engine and a missing plugin says what to install."""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING

from plait.errors import ExecutorError, ExecutorNotInstalledError

if TYPE_CHECKING:
    from plait.executors.base import Executor

_known: dict[str, tuple[str, str]] = {
    "in_process": ("plait.executors.in_process:InProcessExecutor", "plait"),
    "multiprocess": ("plait.executors.multiprocess:MultiprocessExecutor", "plait"),
    "dask": ("plait_dask.executor:DaskExecutor", "plait-dask"),
    "celery": ("plait_celery.executor:CeleryExecutor", "plait-celery"),
}
known_executors = MappingProxyType(_known)
"""Read-only view: executor name -> (``module:Class``, distribution that provides it)."""

_entry_points_loaded: dict[str, str] | None = None


def _from_entry_points() -> dict[str, str]:
    global _entry_points_loaded
    if _entry_points_loaded is None:
        from importlib.metadata import entry_points

        _entry_points_loaded = {ep.name: ep.value for ep in entry_points(group="plait.executors")}
    return _entry_points_loaded


def executor_names() -> list[str]:
    return sorted(set(_known) | set(_from_entry_points()))


def get_executor_class(name: str) -> type[Executor]:
    """The executor class registered as ``name``; imports its package on first use."""
    registered = _from_entry_points()
    if name in registered:
        target, dist = registered[name], name
    elif name in _known:
        target, dist = _known[name]
    else:
        raise ExecutorError(
            f"unknown executor {name!r}; known executors: {', '.join(executor_names())}. "
            "A third-party executor registers itself in the 'plait.executors' entry-point group"
        )
    if name in _known:
        dist = _known[name][1]
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if name not in _known:
            # an entry point exists, so its package is installed: we do not know its pip name
            raise ExecutorNotInstalledError(
                f"executor {name!r} is registered in the 'plait.executors' entry-point group "
                f"as {target!r}, but importing it failed: {exc}. Reinstall the package that "
                "provides it, with its dependencies"
            ) from exc
        if dist == "plait":
            raise ExecutorError(
                f"executor {name!r} ships with plait, but {module_name!r} failed to import "
                f"({exc}); reinstall plait"
            ) from exc
        if exc.name and module_name.startswith(exc.name.split(".")[0]):
            raise ExecutorNotInstalledError(
                f"executor {name!r} needs the package {dist!r}, which is not installed: "
                f"pip install {dist}  (or: uv add {dist})"
            ) from exc
        raise ExecutorNotInstalledError(
            f"executor {name!r} could not import {exc.name!r}: install {dist!r} with its "
            f"dependencies (pip install {dist})"
        ) from exc
    return getattr(module, attr)
