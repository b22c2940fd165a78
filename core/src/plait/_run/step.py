"""``execute_step``: run one attempt of one step, wherever it runs.

Every executor's worker calls this one function. It loads the job (cached per process),
sets up the run's resources (cached per run), loads and type-checks the inputs through
their IO managers, runs the op, type-checks and stores each output as it is produced,
and returns a ``StepOutcome`` with every event of the attempt. Exceptions never escape:
a failing op is a failed outcome. Only KeyboardInterrupt passes through (cancellation).
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle
from plait_io import InputContext, OutputContext

from plait._defs.io import DynamicOutput, Output
from plait._defs.types import check_type, type_name
from plait._load import load_job
from plait._run.resources import RunResources, resolve_resources
from plait.context import OpContext, Resources, StepLogger
from plait.errors import TypeCheckError
from plait.events import EventType, StepEvent
from plait.executors.base import (
    InputSpec,
    OutputRecord,
    StepFailure,
    StepOutcome,
    StepTask,
)
from plait.retry import Failure, RetryRequested

LIVE_EVENT_TYPES = frozenset({EventType.STEP_START, EventType.LOG})


class WorkerState:
    """Per-process caches: loaded jobs, and resources of the most recent runs."""

    def __init__(self, max_runs: int = 4, max_jobs: int = 16) -> None:
        self._max_jobs = max_jobs
        self._jobs: OrderedDict[str, Any] = OrderedDict()
        self._runs: OrderedDict[str, RunResources] = OrderedDict()
        self._max_runs = max_runs
        self._lock = threading.Lock()

    def job(self, task: StepTask) -> Any:
        ref = task.job
        if ref.live is not None:
            return ref.live
        key = ref.cache_key
        with self._lock:
            if key in self._jobs:
                self._jobs.move_to_end(key)
            else:
                if ref.pickled is not None:
                    self._jobs[key] = cloudpickle.loads(ref.pickled)
                elif ref.pointer is not None:
                    self._jobs[key] = load_job(ref.pointer)
                else:
                    raise RuntimeError("the step task carries no job (no pointer, no pickle)")
                while len(self._jobs) > self._max_jobs:  # a long-lived worker sees many jobs
                    self._jobs.popitem(last=False)
            return self._jobs[key]

    def resources(self, task: StepTask, job: Any) -> RunResources:
        with self._lock:
            run = self._runs.get(task.run_id)
            if run is not None:
                self._runs.move_to_end(task.run_id)
                return run
            if task.resources is not None:
                definitions = task.resources
            else:
                from plait.io_managers import ConfigurableFsspecIOManager

                overrides = cloudpickle.loads(task.resource_overrides) if task.resource_overrides else None
                # the coordinator's default IO manager, run config already applied
                default_io = ConfigurableFsspecIOManager(**task.default_io) if task.default_io else None
                definitions = resolve_resources(job.resources, overrides, task.resource_config, default_io)
            run = self._runs[task.run_id] = RunResources(definitions)
            while len(self._runs) > self._max_runs:
                _, old = self._runs.popitem(last=False)
                old.teardown()
            return run

    def close_run(self, run_id: str) -> list[str]:
        with self._lock:
            run = self._runs.pop(run_id, None)
        return run.teardown() if run else []

    def close(self) -> list[str]:
        problems: list[str] = []
        with self._lock:
            runs = list(self._runs.values())
            self._runs.clear()
        for run in runs:
            problems.extend(run.teardown())
        return problems


_process_state = WorkerState()


class StepCanceled(Exception):
    """The coordinator gave up on this attempt (timeout or cancel): store nothing more."""


def execute_step(
    task: StepTask,
    emit: Callable[[StepEvent], None] | None = None,
    state: WorkerState | None = None,
    canceled: threading.Event | None = None,
) -> StepOutcome:
    """Run one step attempt; ``emit`` receives live events (start, logs) as they happen."""
    return _StepRun(task, emit, state or _process_state, canceled).run()


class _StepRun:
    def __init__(
        self,
        task: StepTask,
        emit: Callable[[StepEvent], None] | None,
        state: WorkerState,
        canceled: threading.Event | None,
    ) -> None:
        self.task = task
        self.live = emit
        self.state = state
        self.canceled = canceled
        self.events: list[StepEvent] = []
        self.outputs: list[OutputRecord] = []
        self._delivered = 0

    def emit(self, event_type: EventType, message: str = "", level: int = 20, data: dict | None = None) -> None:
        event = StepEvent(
            event_type,
            self.task.step_key,
            self.task.attempt,
            len(self.events),
            time.time(),
            message,
            level,
            data or {},
            self.task.run_id,
        )
        self.events.append(event)
        if self.live is not None and event_type in LIVE_EVENT_TYPES:
            # deliver the attempt's earlier events first, so that the run's log keeps the
            # order things happened in (inputs loaded before the op's own log lines)
            pending, self._delivered = self.events[self._delivered :], len(self.events)
            for item in pending:
                # a lost live event is recovered from the outcome
                with contextlib.suppress(Exception):
                    self.live(item)

    def outcome(self, failure: StepFailure | None = None) -> StepOutcome:
        task = self.task
        return StepOutcome(task.run_id, task.step_key, task.attempt, self.events, self.outputs, failure)

    def run(self) -> StepOutcome:
        task = self.task
        try:
            # load the job before STEP_START: loading code is not the op's time (timeouts
            # count from STEP_START)
            job = self.state.job(task)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - reported below, after STEP_START
            job, load_error = None, exc
        else:
            load_error = None
        started = time.perf_counter()
        self.emit(EventType.STEP_START, f"started (attempt {task.attempt + 1})", data={"attempt": task.attempt})
        try:
            if load_error is not None:
                raise load_error
            node = job.nodes.get(task.node_key)
            if node is None:
                raise LookupError(
                    f"job {job.name!r} has no step {task.node_key!r}: this worker loaded "
                    "different code than the coordinator has; deploy the same version"
                )
            resources = self.state.resources(task, job)
            self._run_op(node, resources)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure becomes an outcome
            return self.outcome(_failure_from(exc))
        elapsed = time.perf_counter() - started
        self.emit(EventType.STEP_SUCCESS, f"finished in {elapsed * 1000:.1f} ms", data={"duration_s": elapsed})
        return self.outcome()

    def _run_op(self, node: Any, resources: RunResources) -> None:
        op_def = node.op
        task = self.task
        kwargs: dict[str, Any] = {}
        for name, spec in op_def.ins.items():
            if name in task.inputs:
                value = self._load_input(name, task.inputs[name], resources)
            else:
                value = spec.default
            problem = check_type(value, spec.type)
            if problem:
                raise TypeCheckError(
                    f"input {name!r} of op {op_def.name!r} failed its type check: {problem}"
                )
            self.emit(EventType.STEP_INPUT, f"input {name!r} passed its type check ({type_name(spec.type)})",
                      data={"input_name": name, "type": type_name(spec.type)})
            kwargs[name] = value
        config = None
        if op_def.config_param:
            param, config_cls = op_def.config_param
            config = config_cls.model_validate(task.op_config or {})
            kwargs[param] = config
        for param in op_def.resource_params:
            kwargs[param] = resources.get(param)
        context = OpContext(
            run_id=task.run_id,
            step_key=task.step_key,
            op_name=op_def.name,
            retry_number=task.attempt,
            mapping_key=task.mapping_key,
            log=StepLogger(self.emit, task.step_key),
            resources=Resources(resources.get, resources.keys),
            op_config=config,
        )
        if op_def.context_param:
            kwargs[op_def.context_param] = context
        produced = _Produced(op_def)
        result = op_def.fn(**kwargs)
        if op_def.is_generator:
            for item in result:
                self._store(produced.accept_yielded(item), context, resources)
        else:
            if inspect.isgenerator(result):
                raise TypeError(f"op {op_def.name!r} returned a generator object; use `yield` in the op itself")
            for item in produced.from_return(result):
                self._store(item, context, resources)
        produced.check_required()

    def _load_input(self, name: str, spec: InputSpec, resources: RunResources) -> Any:
        values = []
        for handle in spec.handles:
            upstream = OutputContext(
                handle.run_id, handle.step_key, handle.output_name, handle.mapping_key, handle.metadata
            )
            context = InputContext(self.task.run_id, self.task.step_key, name, upstream, handle.location)
            values.append(resources.io_manager(handle.io_manager_key).load_input(context))
            self.emit(
                EventType.LOADED_INPUT,
                f"loaded input {name!r} from {handle.step_key}.{handle.output_name}"
                + (f"[{handle.mapping_key}]" if handle.mapping_key else ""),
                data={
                    "input_name": name,
                    "upstream_step": handle.step_key,
                    "upstream_output": handle.output_name,
                    "mapping_key": handle.mapping_key,
                    "location": handle.location,
                },
            )
        return values if spec.is_list else values[0]

    def _store(self, item: tuple[str, str | None, Any, dict], context: OpContext, resources: RunResources) -> None:
        output_name, mapping_key, value, metadata = item
        out = context_out = self._out(output_name)
        problem = check_type(value, out.type)
        if problem:
            where = f"[{mapping_key}]" if mapping_key else ""
            raise TypeCheckError(
                f"output {output_name!r}{where} of op {context.op_name!r} failed its type check: {problem}"
            )
        if self.canceled is not None and self.canceled.is_set():
            raise StepCanceled("the attempt was abandoned (timeout or cancel); its outputs were not stored")
        out_ctx = OutputContext(self.task.run_id, self.task.step_key, output_name, mapping_key,
                                dict(context_out.metadata), attempt=self.task.attempt)
        stored = resources.io_manager(out.io_manager_key).handle_output(out_ctx, value)
        user_meta = {**context.output_metadata(output_name, mapping_key), **metadata}
        location = stored.location if stored else None
        size = stored.size if stored else None
        if stored and stored.metadata:
            user_meta = {**stored.metadata, **user_meta}
        record = OutputRecord(output_name, mapping_key, location, size, out.io_manager_key, user_meta)
        self.outputs.append(record)
        label = output_name + (f"[{mapping_key}]" if mapping_key else "")
        self.emit(
            EventType.STEP_OUTPUT,
            f"output {label!r} passed its type check ({type_name(out.type)})",
            data={"output_name": output_name, "mapping_key": mapping_key, "type": type_name(out.type),
                  "metadata": user_meta, "location": location, "size": size,
                  "io_manager_key": out.io_manager_key},
        )
        self.emit(
            EventType.HANDLED_OUTPUT,
            f"stored output {label!r}" + (f" at {location}" if location else " in memory"),
            data={"output_name": output_name, "mapping_key": mapping_key, "location": location, "size": size,
                  "io_manager_key": out.io_manager_key},
        )

    def _out(self, name: str) -> Any:
        job = self.state.job(self.task)
        return job.nodes[self.task.node_key].op.outs[name]


class _Produced:
    """Turns what an op returned or yielded into (output, mapping key, value, metadata)
    items, and checks names, duplicates and required outputs."""

    def __init__(self, op_def: Any) -> None:
        self.op = op_def
        self.seen: set[str] = set()
        self.keys: dict[str, set[str]] = {}

    def accept_yielded(self, item: Any) -> tuple[str, str | None, Any, dict]:
        outs = self.op.outs
        if isinstance(item, DynamicOutput):
            out = outs.get(item.output_name)
            if out is None or not out.is_dynamic:
                raise TypeError(self._unknown(item.output_name, dynamic=True))
            keys = self.keys.setdefault(item.output_name, set())
            if item.mapping_key in keys:
                raise TypeError(
                    f"op {self.op.name!r} yielded mapping key {item.mapping_key!r} twice for "
                    f"output {item.output_name!r}; mapping keys must be unique"
                )
            keys.add(item.mapping_key)
            self.seen.add(item.output_name)
            return item.output_name, item.mapping_key, item.value, dict(item.metadata or {})
        if isinstance(item, Output):
            out = outs.get(item.output_name)
            if out is None or out.is_dynamic:
                raise TypeError(self._unknown(item.output_name, dynamic=False))
            if item.output_name in self.seen:
                raise TypeError(f"op {self.op.name!r} yielded output {item.output_name!r} twice")
            self.seen.add(item.output_name)
            return item.output_name, None, item.value, dict(item.metadata or {})
        raise TypeError(
            f"op {self.op.name!r} yielded {type(item).__name__}; a generator op yields "
            "Output(value, name) or DynamicOutput(value, mapping_key)"
        )

    def _unknown(self, name: str, dynamic: bool) -> str:
        kind = "DynamicOutput" if dynamic else "Output"
        fitting = sorted(n for n, o in self.op.outs.items() if o.is_dynamic == dynamic)
        return (
            f"op {self.op.name!r} yielded a {kind} for {name!r}, but its "
            f"{'dynamic ' if dynamic else ''}outputs are {fitting}"
        )

    def from_return(self, value: Any) -> Iterator[tuple[str, str | None, Any, dict]]:
        outs = self.op.outs
        if not outs:
            if value is not None:
                raise TypeError(f"op {self.op.name!r} declares no outputs but returned {type(value).__name__}")
            return
        names = list(outs)
        if len(names) == 1:
            out = outs[names[0]]
            if out.is_dynamic:
                if not isinstance(value, list | tuple):
                    raise TypeError(
                        f"op {self.op.name!r} has a DynamicOut: yield DynamicOutput items or "
                        f"return a list of them, not {type(value).__name__}"
                    )
                for item in value:
                    yield self.accept_yielded(item)
                return
            yield self.accept_yielded(value if isinstance(value, Output) else Output(value, names[0]))
            return
        if not isinstance(value, tuple) or len(value) != len(names):
            raise TypeError(
                f"op {self.op.name!r} has outputs {names}: return a tuple of {len(names)} "
                "values in that order, or yield Output(value, name) for each"
            )
        for name, item in zip(names, value, strict=True):
            if isinstance(item, Output | DynamicOutput):
                yield self.accept_yielded(item)
            elif outs[name].is_dynamic:
                for dyn in item:
                    yield self.accept_yielded(dyn)
            else:
                yield self.accept_yielded(Output(item, name))

    def check_required(self) -> None:
        missing = sorted(n for n, o in self.op.outs.items() if o.is_required and n not in self.seen)
        if missing:
            raise TypeError(
                f"op {self.op.name!r} did not produce required output(s) {missing}; yield "
                "Output(value, name) for each, or declare them Out(is_required=False)"
            )


def _failure_from(exc: BaseException) -> StepFailure:
    stack = "".join(traceback.format_exception(exc))
    name = type(exc).__name__
    if isinstance(exc, Failure):
        return StepFailure("error", exc.description or name, name, stack, exc.allow_retries,
                           metadata=exc.metadata, exception=exc)
    if isinstance(exc, RetryRequested):
        return StepFailure("error", str(exc), name, stack, True,
                           retry_requested=(exc.max_retries, exc.seconds_to_wait), exception=exc)
    if isinstance(exc, TypeCheckError):
        return StepFailure("error", str(exc), "TypeCheckError", stack, allow_retries=False, exception=exc)
    if isinstance(exc, StepCanceled):
        return StepFailure("canceled", str(exc), name, stack, allow_retries=False)
    return StepFailure("error", f"{name}: {exc}", name, stack, exception=exc)


def portable(outcome: StepOutcome) -> StepOutcome:
    """The outcome with its exception dropped if that does not pickle (for sending it to
    another process)."""
    failure = outcome.failure
    if failure is None or failure.exception is None:
        return outcome
    try:
        cloudpickle.dumps(failure.exception)
        return outcome
    except Exception:  # noqa: BLE001 - any unpicklable exception is dropped
        from dataclasses import replace

        return replace(outcome, failure=replace(failure, exception=None))
