"""plait: a data orchestrator. Write a job once as a graph of typed, configurable ops;
run it in-process, on a process pool, on Dask or on Celery, chosen in run config.

Everything public is importable from here; modules starting with ``_`` are internal.
Names load lazily (PEP 562), so ``import plait`` is cheap and imports neither pydantic
nor any engine until a name that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_NAMES: dict[str, str] = {
    # definitions
    "op": "plait._defs.op",
    "OpDefinition": "plait._defs.op",
    "graph": "plait._defs.graph",
    "GraphDefinition": "plait._defs.graph",
    "job": "plait._defs.job",
    "JobDefinition": "plait._defs.job",
    "In": "plait._defs.io",
    "Out": "plait._defs.io",
    "DynamicOut": "plait._defs.io",
    "Output": "plait._defs.io",
    "DynamicOutput": "plait._defs.io",
    "OutputHandle": "plait._defs.compose",
    "GraphInputHandle": "plait._defs.compose",
    "PlaitType": "plait._defs.types",
    "TypeCheck": "plait._defs.types",
    "Config": "plait.config",
    "ConfigurableResource": "plait.config",
    "ConfigurableFsspecIOManager": "plait.io_managers",
    "OpContext": "plait.context",
    "RetryPolicy": "plait.retry",
    "Backoff": "plait.retry",
    "Jitter": "plait.retry",
    "Failure": "plait.retry",
    "RetryRequested": "plait.retry",
    # running
    "Instance": "plait.instance",
    "RunResult": "plait.result",
    "RunRecord": "plait._storage.base",
    "RunStatus": "plait._storage.base",
    "Event": "plait.events",
    "EventType": "plait.events",
    "execute_job": "plait._run.execute",
    "execute_step": "plait._run.step",
    "reexecute": "plait._run.reexecute",
    "load_job": "plait._load",
    "Executor": "plait.executors.base",
    "StepHandle": "plait.executors.base",
    "StepOutcome": "plait.executors.base",
    "StepTask": "plait.executors.base",
    # errors
    "PlaitError": "plait.errors",
    "PlaitDefinitionError": "plait.errors",
    "RunConfigError": "plait.errors",
    "ResourceError": "plait.errors",
    "ExecutorError": "plait.errors",
    "ExecutorNotInstalledError": "plait.errors",
    "StorageError": "plait.errors",
    "PlaitStepError": "plait.errors",
    "RunCanceledError": "plait.errors",
    "TypeCheckError": "plait.errors",
}
_RENAMED = {"load_run_config": ("plait._run.run_config", "load_yaml")}

__all__ = sorted([*_NAMES, *_RENAMED])


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif name in _RENAMED:
        module, attr = _RENAMED[name]
        value = getattr(importlib.import_module(module), attr)
    else:
        raise AttributeError(f"module 'plait' has no attribute {name!r}")
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from plait._defs.compose import GraphInputHandle, OutputHandle
    from plait._defs.graph import GraphDefinition, graph
    from plait._defs.io import DynamicOut, DynamicOutput, In, Out, Output
    from plait._defs.job import JobDefinition, job
    from plait._defs.op import OpDefinition, op
    from plait._defs.types import PlaitType, TypeCheck
    from plait._load import load_job
    from plait._run.execute import execute_job
    from plait._run.reexecute import reexecute
    from plait._run.run_config import load_yaml as load_run_config
    from plait._run.step import execute_step
    from plait._storage.base import RunRecord, RunStatus
    from plait.config import Config, ConfigurableResource
    from plait.context import OpContext
    from plait.errors import (
        ExecutorError,
        ExecutorNotInstalledError,
        PlaitDefinitionError,
        PlaitError,
        PlaitStepError,
        ResourceError,
        RunCanceledError,
        RunConfigError,
        StorageError,
        TypeCheckError,
    )
    from plait.events import Event, EventType
    from plait.executors.base import Executor, StepHandle, StepOutcome, StepTask
    from plait.instance import Instance
    from plait.io_managers import ConfigurableFsspecIOManager
    from plait.result import RunResult
    from plait.retry import Backoff, Failure, Jitter, RetryPolicy, RetryRequested
