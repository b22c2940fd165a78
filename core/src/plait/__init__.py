"""plait: a data orchestrator. Write a job once as a graph of typed, configurable ops;
run it in-process, on a process pool, on Dask or on Celery, chosen in run config.

Everything public is importable from here; modules starting with ``_`` are internal.
"""

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
)
from plait.events import Event, EventType
from plait.executors.base import Executor, StepHandle, StepOutcome, StepTask
from plait.instance import Instance
from plait.result import RunResult
from plait.retry import Backoff, Failure, Jitter, RetryPolicy, RetryRequested

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "Config",
    "ConfigurableResource",
    "DynamicOut",
    "DynamicOutput",
    "Event",
    "EventType",
    "Executor",
    "ExecutorError",
    "ExecutorNotInstalledError",
    "Failure",
    "GraphDefinition",
    "GraphInputHandle",
    "In",
    "Instance",
    "Jitter",
    "JobDefinition",
    "OpContext",
    "OpDefinition",
    "Out",
    "Output",
    "OutputHandle",
    "PlaitDefinitionError",
    "PlaitError",
    "PlaitStepError",
    "PlaitType",
    "ResourceError",
    "RetryPolicy",
    "RetryRequested",
    "RunCanceledError",
    "RunConfigError",
    "RunRecord",
    "RunResult",
    "RunStatus",
    "StepHandle",
    "StepOutcome",
    "StepTask",
    "StorageError",
    "TypeCheck",
    "execute_job",
    "execute_step",
    "graph",
    "job",
    "load_job",
    "load_run_config",
    "op",
    "reexecute",
]
