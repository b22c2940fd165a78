"""Preparing and running one run: everything before and after the loop.

Before any step runs, all of this is checked and any problem is raised as one clear
error: run config (every problem with its path), op selection, resources, the executor
and its config, whether the job and its IO managers can reach the executor's workers,
and that every IO manager's storage is usable (preflight).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import cloudpickle
from plait_io import IOManager

from plait._defs.compose import Collect, FanIn, FromOutput
from plait._load import find_code_pointer
from plait._plan.selection import select_nodes
from plait._run.coordinator import Coordinator, RunPlan
from plait._run.outputs import StepOutputs
from plait._run.recorder import RunRecorder
from plait._run.resources import IO_MANAGER_KEY, InstanceDefaultIO, resolve_resources
from plait._run.run_config import ValidatedRunConfig, validate_run_config
from plait._storage.base import RunRecord, RunStatus
from plait.errors import ExecutorError, ResourceError, RunConfigError, StorageError
from plait.events import Event, EventType
from plait.executors.base import Executor, JobRef
from plait.executors.registry import get_executor_class
from plait.io_managers import ConfigurableFsspecIOManager
from plait.result import RunResult

if TYPE_CHECKING:
    from plait._defs.job import JobDefinition
    from plait.instance import Instance


def execute_job(
    job: JobDefinition,
    *,
    run_config: Mapping[str, Any] | str | None = None,
    executor: str | Executor | None = None,
    instance: Instance | None = None,
    op_selection: list[str] | None = None,
    tags: Mapping[str, str] | None = None,
    raise_on_error: bool = True,
    resources: Mapping[str, Any] | None = None,
    cancel: threading.Event | None = None,
    on_event: Callable[[Event], None] | None = None,
    parent_run_id: str | None = None,
    reused: Mapping[str, StepOutputs] | None = None,
    run_id: str | None = None,
) -> RunResult:
    from plait.instance import Instance

    instance = instance if instance is not None else Instance()
    available = {**job.resources, **(resources or {})}
    arg_name = executor if isinstance(executor, str) else getattr(executor, "name", None)
    uses_default_io = IO_MANAGER_KEY not in available
    checked = {**available, IO_MANAGER_KEY: InstanceDefaultIO.of(instance)} if uses_default_io \
        else available
    validated = validate_run_config(job, run_config, checked, arg_name)
    selected = _selection(job, op_selection, reused or {})
    executor_obj = _choose_executor(job, executor, validated)

    default_io = None
    if uses_default_io:  # run config is applied here, once, where relative paths are meant
        default_io = instance.default_io_manager(validated.resource_config.pop(IO_MANAGER_KEY, None))
    resolved = resolve_resources(job.resources, resources, validated.resource_config, default_io)
    io_managers = _check_resources(job, selected, resolved)

    run_id = run_id or uuid.uuid4().hex
    plan = RunPlan(
        run_id=run_id,
        job=job,
        selected=selected,
        op_configs=validated.op_configs,
        resource_config=validated.resource_config,
        job_ref=JobRef(live=job),
        reused=dict(reused or {}),
    )
    pointer = find_code_pointer(job)
    job_pickle: bytes | None = None
    if executor_obj.crosses_processes:
        _check_cross_process(executor_obj, io_managers, uses_default_io)
        job_pickle = _pickle_job(job, executor_obj)
        plan.job_ref = JobRef(pointer=pointer, pickled=None if executor_obj.requires_code_pointer else job_pickle)
        if executor_obj.requires_code_pointer and pointer is None:
            raise ExecutorError(
                f"executor {executor_obj.name!r} needs to import job {job.name!r} on its workers, "
                "but the job has no importable code pointer (it is defined in __main__, a "
                "notebook or a function). Define it at module level in an importable module, "
                "or run it from the CLI as `plait run path/to/file.py:job`"
            )
        plan.resource_overrides = cloudpickle.dumps(dict(resources)) if resources else None
        if isinstance(default_io, ConfigurableFsspecIOManager):
            # its fields, run config applied: workers rebuild the very same manager
            plan.default_io = default_io.model_dump()
    else:
        plan.resources = resolved
    _preflight(io_managers)
    executor_obj.check_job(job, None)  # type: ignore[arg-type]

    if pointer is None and job_pickle is None and not instance.is_ephemeral:
        try:
            job_pickle = cloudpickle.dumps(job)
        except Exception:  # noqa: BLE001 - then it simply cannot be re-executed by pickle
            job_pickle = None
    record = RunRecord(
        run_id=run_id,
        job_name=job.name,
        run_config=validated.raw,
        tags={**job.tags, **(tags or {})},
        parent_run_id=parent_run_id,
        start_time=time.time(),
        job_pointer=pointer,
        job_pickle=job_pickle if pointer is None else None,
    )
    instance.storage.create_run(record)
    listeners = [on_event] if on_event else []
    recorder = RunRecorder(run_id, instance.storage, listeners)
    coordinator = Coordinator(plan, executor_obj, recorder, cancel)
    recorder._on_step_start = coordinator.on_step_start
    recorder.record(
        EventType.RUN_START,
        f"run of job {job.name!r} started on executor {executor_obj.name!r}",
        data={"executor": executor_obj.name, "selected": sorted(selected), "parent_run_id": parent_run_id},
    )
    executor_obj.on_event = recorder.live
    status = RunStatus.FAILURE
    try:
        with executor_obj:
            try:
                coordinator.run()
            finally:
                executor_obj.run_finished(run_id)
        if coordinator.canceled:
            status = RunStatus.CANCELED
        elif coordinator.failed_steps:
            status = RunStatus.FAILURE
        else:
            status = RunStatus.SUCCESS
    except BaseException as exc:
        recorder.record(EventType.LOG, f"the run loop stopped: {type(exc).__name__}: {exc}", level=50)
        raise
    finally:
        _end_run(instance, recorder, run_id, status, coordinator)
    result = RunResult(job, run_id, status, recorder.events, resolved, coordinator.first_failure)
    if raise_on_error:
        result.raise_for_status()
    return result


def _end_run(instance: Instance, recorder: RunRecorder, run_id: str, status: RunStatus,
             coordinator: Coordinator) -> None:
    failed = coordinator.failed_steps
    if status is RunStatus.SUCCESS:
        recorder.record(EventType.RUN_SUCCESS, "run succeeded")
    elif status is RunStatus.CANCELED:
        recorder.record(EventType.RUN_CANCELED, "run canceled", level=30, data={"failed_steps": failed})
    else:
        message = f"run failed: step(s) {', '.join(failed)} failed" if failed else "run failed"
        recorder.record(EventType.RUN_FAILURE, message, level=40, data={"failed_steps": failed})
    recorder.flush()
    instance.storage.update_run(run_id, status=status, end_time=time.time())


def _selection(job: JobDefinition, op_selection: list[str] | None,
               reused: Mapping[str, StepOutputs]) -> set[str]:
    selected = set(job.nodes) if not op_selection else select_nodes(job.nodes, op_selection)
    available = selected | {k.split("[", 1)[0] for k in reused}
    problems = []
    for key in sorted(selected):
        node = job.nodes[key]
        needed = list(node.inputs.items())
        for input_name, source in needed:
            ups = (
                [source.node_key] if isinstance(source, FromOutput | Collect)
                else [i.node_key for i in source.items] if isinstance(source, FanIn) else []
            )
            for up in ups:
                if up not in available:
                    problems.append(
                        f"op_selection: op {key!r} needs {up!r} (input {input_name!r}), which is "
                        f"not selected; select it too (e.g. '*{key}' selects all ancestors)"
                    )
        if node.mapped_over is not None and node.mapped_over.node_key not in available:
            problems.append(
                f"op_selection: op {key!r} is mapped over {node.mapped_over.node_key!r}, which is not selected"
            )
    if problems:
        raise RunConfigError(problems)
    return selected


def _choose_executor(job: JobDefinition, executor: str | Executor | None,
                     validated: ValidatedRunConfig) -> Executor:
    if isinstance(executor, Executor):
        return executor
    name = executor or validated.executor_name
    config = validated.executor_config if name == validated.executor_name else {}
    if name is None:
        if isinstance(job.executor, Executor):
            return job.executor
        name = job.executor or "in_process"
    cls = get_executor_class(name)
    return cls(config)


def _check_resources(job: JobDefinition, selected: set[str], resolved: Mapping[str, Any]) -> dict[str, IOManager]:
    problems = []
    io_keys: set[str] = set()
    for key in sorted(selected):
        op_def = job.nodes[key].op
        for res_key in sorted(op_def.required_resource_keys):
            if res_key not in resolved:
                problems.append(
                    f"op {key!r} needs resource {res_key!r}, which the job does not provide; "
                    f"add it to the job's resources={{...}} or pass resources={{{res_key!r}: ...}} to execute()"
                )
        io_keys.update(out.io_manager_key for out in op_def.outs.values())
    io_managers: dict[str, IOManager] = {}
    for io_key in sorted(io_keys):
        manager = resolved.get(io_key)
        if manager is None:
            problems.append(f"an output uses IO manager {io_key!r}, which is not among the resources ({', '.join(sorted(resolved))})")
        elif not isinstance(manager, IOManager):
            problems.append(f"resource {io_key!r} is used as an IO manager but is a {type(manager).__name__}")
        else:
            io_managers[io_key] = manager
    if problems:
        raise ResourceError("\n".join(problems))
    return io_managers


def _check_cross_process(executor: Executor, io_managers: Mapping[str, IOManager],
                         uses_default_io: bool) -> None:
    local = sorted(key for key, m in io_managers.items() if m.process_local)
    if local:
        in_run_config = (
            "Say where outputs go in run config (resources: {io_manager: {config: {base_url: "
            "'s3://bucket/prefix'}}}), use " if uses_default_io and IO_MANAGER_KEY in local
            else "Use "
        )
        raise ExecutorError(
            f"executor {executor.name!r} runs steps in other processes, but IO manager(s) "
            f"{local} keep outputs in one process's memory. {in_run_config}an FsspecIOManager "
            "(resources={'io_manager': FsspecIOManager('s3://bucket/prefix')}), or a persistent "
            "Instance(), whose default IO manager stores outputs under its storage folder"
        )


def _pickle_job(job: JobDefinition, executor: Executor) -> bytes:
    try:
        return cloudpickle.dumps(job)
    except Exception as exc:  # noqa: BLE001 - explained below
        culprit = _find_unpicklable(job)
        raise ExecutorError(
            f"executor {executor.name!r} sends the job to worker processes, but job {job.name!r} "
            f"does not pickle: {culprit or exc}. Objects such as locks, open files, sockets and "
            "clients cannot cross processes: create them in a ConfigurableResource's setup() "
            "instead of holding them in the op's closure or the resource's fields"
        ) from exc


def _find_unpicklable(job: JobDefinition) -> str | None:
    for key, node in job.nodes.items():
        try:
            cloudpickle.dumps(node.op)
        except Exception as exc:  # noqa: BLE001
            return f"op {key!r} holds an object that does not pickle ({type(exc).__name__}: {exc})"
    for key, resource in job.resources.items():
        try:
            cloudpickle.dumps(resource)
        except Exception as exc:  # noqa: BLE001
            return f"resource {key!r} does not pickle ({type(exc).__name__}: {exc})"
    return None


def _preflight(io_managers: Mapping[str, IOManager]) -> None:
    for key, manager in io_managers.items():
        try:
            manager.preflight()
        except Exception as exc:  # noqa: BLE001 - any failure stops the run before its steps
            raise StorageError(
                f"IO manager {key!r} ({manager.describe()}) is not usable, so no step was run: {exc}"
            ) from exc
