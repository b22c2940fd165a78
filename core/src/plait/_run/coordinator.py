"""The run loop: one coordinator per run, the same for every executor.

State (all owned by the coordinator thread):

- ``steps``: every instantiated step by key, each a ``StepState`` with a ``status``:
  PENDING (waiting on ``waiting`` unfinished dependencies) -> READY (inputs resolved,
  in the ready heap) -> IN_FLIGHT (submitted; ``attempt`` is the attempt we wait for)
  -> SUCCEEDED | FAILED | SKIPPED, or back to RETRY_WAIT -> READY after a failure the
  retry policy retries.
- ``dependents``: step key -> steps waiting on it. Finishing a step decrements their
  ``waiting``; at zero the step is *resolved*: its input handles are built from its
  upstream outputs, or it is skipped (an upstream failed or was skipped, or a required
  output was not produced).
- ``ready``: a heap ordered by the ``plait/priority`` tag (higher first), then plan order
  (creation order in the graph), then mapping-key order.
- ``in_flight``: executor handle -> step; at most ``executor.max_concurrent`` of them.
- ``retries``: a heap of (due time, step) for attempts waiting out their backoff.
- ``collectors``: dynamic output -> steps that collect over it. When the producer of a
  dynamic output finishes, its mapped nodes are instantiated once per mapping key, and
  each collector gains a dependency on every mapped step it gathers.

The loop: submit ready steps up to ``max_concurrent``; block in ``executor.wait`` until
a step finishes, the next retry is due, the next step deadline (op ``timeout``)
passes or recorded events are due to be written (``FLUSH_DELAY_SECONDS``); record
outcomes; repeat until nothing is ready, in flight or waiting to retry.
Then every instantiated step must be final; anything else is a bug and is reported.

Outcomes are fenced: only the outcome of the attempt the coordinator waits for is
accepted, so a late or duplicate attempt can never record events twice or replace a
committed output. Cancellation (the ``cancel`` event, or KeyboardInterrupt/SIGINT) stops
submitting, cancels in-flight steps and ends the run RUN_CANCELED.
"""

from __future__ import annotations

import enum
import heapq
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from plait._defs.compose import Collect, DynamicSource, FanIn, FromOutput, NodeSpec
from plait._run.outputs import StepOutputs, output_event_data
from plait._run.recorder import RunRecorder
from plait.events import EventType
from plait.executors.base import (
    Executor,
    InputHandle,
    InputSpec,
    JobRef,
    StepFailure,
    StepHandle,
    StepOutcome,
    StepTask,
)
from plait.retry import RetryPolicy

if TYPE_CHECKING:
    from plait._defs.job import JobDefinition

CANCEL_CHECK_SECONDS = 0.25


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    READY = "ready"
    IN_FLIGHT = "in_flight"
    RETRY_WAIT = "retry_wait"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


FINAL = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED})


@dataclass
class StepState:
    key: str
    node: NodeSpec
    mapping_key: str | None
    sort_key: tuple[int, int, int]
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    waiting: int = 0
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    outputs: StepOutputs | None = None
    failure: StepFailure | None = None


@dataclass
class RunPlan:
    """Everything the loop needs, prepared and validated by ``plait._run.execute``."""

    run_id: str
    job: JobDefinition
    selected: set[str]
    """Node keys to run."""
    op_configs: dict[str, dict[str, Any]]
    resource_config: dict[str, dict[str, Any]]
    job_ref: JobRef
    resources: dict[str, Any] | None = None
    resource_overrides: bytes | None = None
    default_io: dict[str, Any] | None = None
    reused: dict[str, StepOutputs] = field(default_factory=dict)
    """Steps whose outputs come from a parent run instead of running again."""


class Coordinator:
    def __init__(
        self,
        plan: RunPlan,
        executor: Executor,
        recorder: RunRecorder,
        cancel: threading.Event | None = None,
    ) -> None:
        self.plan = plan
        self.job = plan.job
        self.executor = executor
        self.recorder = recorder
        self.cancel_event = cancel
        self.steps: dict[str, StepState] = {}
        self.dependents: dict[str, list[StepState]] = {}
        self.collectors: dict[DynamicSource, list[StepState]] = {}
        self.mapped_nodes: dict[DynamicSource, list[NodeSpec]] = {}
        self.ready: list[tuple[int, int, int, str]] = []
        self.in_flight: dict[StepHandle, StepState] = {}
        self.retries: list[tuple[float, int, str]] = []
        self.deadlines: dict[str, float] = {}
        self.started_at: dict[str, float] = {}
        self.first_failure: tuple[str, StepFailure] | None = None
        self.canceled = False
        self._retry_seq = 0
        for node in self.job.nodes.values():
            if node.mapped_over is not None:
                self.mapped_nodes.setdefault(node.mapped_over, []).append(node)

    # ---- the loop -------------------------------------------------------------------

    def run(self) -> None:
        for node in self.job.nodes.values():
            if node.mapped_over is None and self._wanted(node, node.key):
                self._instantiate(node, None)
        try:
            self._loop()
        except KeyboardInterrupt:
            self._cancel_all("interrupted (SIGINT)")
        self.recorder.flush()

    def _loop(self) -> None:
        while True:
            if self.cancel_event is not None and self.cancel_event.is_set():
                self._cancel_all("canceled")
                return
            self._submit_ready()
            if not self.in_flight and not self.ready and not self.retries:
                self._check_plan_finished()
                return
            self.recorder.flush_if_due()
            if self.in_flight:
                outcomes = self.executor.wait(list(self.in_flight), self._wait_timeout())
                for outcome in outcomes:
                    self._on_outcome(outcome)
            else:
                self._idle()
            self._release_due_retries()
            self._expire_deadlines()

    def _idle(self) -> None:
        """Nothing in flight, only retries waiting out their backoff: block until the
        first is due (an executor's ``wait`` on no handles may return at once), waking
        early on cancel."""
        timeout = self._wait_timeout(cancel_check=False)
        if timeout is None:
            raise AssertionError(
                f"plait bug: nothing in flight or due; executor {self.executor.name!r} "
                f"accepts max_concurrent={self.executor.max_concurrent} steps at once"
            )
        waiter = self.cancel_event if self.cancel_event is not None else threading.Event()
        waiter.wait(timeout)

    def _wait_timeout(self, cancel_check: bool = True) -> float | None:
        now = time.monotonic()
        candidates = [due - now for due, _, _ in self.retries[:1]]
        candidates += [self._deadline(k) - now for k in self.deadlines]
        flush_due = self.recorder.flush_due_in()
        if flush_due is not None:
            candidates.append(flush_due)
        if cancel_check and self.cancel_event is not None:
            candidates.append(CANCEL_CHECK_SECONDS)
        if not candidates:
            return None
        return max(0.0, min(candidates))

    def _deadline(self, step_key: str) -> float:
        """When to act on a step with a timeout: its start + timeout once its live
        STEP_START arrived, else the next time to look whether it started."""
        started = self.started_at.get(step_key)
        return self.deadlines[step_key] if started is None else started + self._timeout_of(step_key)

    def _timeout_of(self, step_key: str) -> float:
        return self.steps[step_key].node.op.timeout or 0.0

    def on_step_start(self, step_key: str, attempt: int) -> None:
        """Live STEP_START (any thread): the timeout counts from when the step really began."""
        self.started_at[step_key] = time.monotonic()

    # ---- instantiation and resolution -----------------------------------------------

    def _wanted(self, node: NodeSpec, step_key: str) -> bool:
        return node.key in self.plan.selected or step_key in self.plan.reused

    def _instantiate(self, node: NodeSpec, mapping_key: str | None, index: int = 0) -> None:
        key = node.key if mapping_key is None else f"{node.key}[{mapping_key}]"
        step = StepState(key, node, mapping_key, (-node.op.priority, node.order, index))
        self.steps[key] = step
        if key in self.plan.reused:
            self._reuse(step, self.plan.reused[key])
            return
        deps: list[str] = []
        for source in node.inputs.values():
            if isinstance(source, FromOutput):
                deps.append(self._upstream_key(source.node_key, mapping_key))
            elif isinstance(source, FanIn):
                deps.extend(self._upstream_key(item.node_key, None) for item in source.items)
            elif isinstance(source, Collect):
                deps.extend(self._collect_deps(source, step))
        self._wait_on(step, deps)
        if step.waiting == 0:
            self._resolve(step)

    def _upstream_key(self, node_key: str, mapping_key: str | None) -> str:
        node = self.job.nodes[node_key]
        return node_key if node.mapped_over is None else f"{node_key}[{mapping_key}]"

    def _collect_deps(self, source: Collect, step: StepState) -> list[str]:
        producer = self.steps.get(source.source.node_key)
        if producer is None or producer.status not in FINAL:
            self.collectors.setdefault(source.source, []).append(step)
            return [source.source.node_key]
        return self._gathered_keys(source, producer)

    def _gathered_keys(self, source: Collect, producer: StepState) -> list[str]:
        if source.node_key == source.source.node_key:
            return [producer.key]
        keys = producer.outputs.dynamic_keys(source.source.output_name) if producer.outputs else None
        return [f"{source.node_key}[{k}]" for k in keys or []]

    def _wait_on(self, step: StepState, deps: list[str]) -> None:
        for dep in dict.fromkeys(deps):
            upstream = self.steps.get(dep)
            if upstream is None:
                raise AssertionError(f"step {step.key!r} depends on {dep!r}, which is not planned")
            if upstream.status not in FINAL:
                step.waiting += 1
                self.dependents.setdefault(dep, []).append(step)

    def _reuse(self, step: StepState, outputs: StepOutputs) -> None:
        step.status = StepStatus.SUCCEEDED
        step.outputs = outputs
        self.recorder.record(
            EventType.LOG,
            f"reusing the outputs step {step.key!r} stored in run {outputs.run_id}",
            step_key=step.key,
            data={"reused_from": outputs.run_id},
        )
        for record in outputs.records.values():
            self.recorder.record(
                EventType.STEP_OUTPUT,
                f"output {record.output_name!r} reused from run {outputs.run_id}",
                step_key=step.key,
                data=output_event_data(record, outputs.run_id),
            )
        self._finished(step)

    def _resolve(self, step: StepState) -> None:
        """All dependencies are final: build input handles, or skip the step."""
        specs: dict[str, InputSpec] = {}
        for name, source in step.node.inputs.items():
            if isinstance(source, FromOutput):
                handle, problem = self._handle(source.node_key, source.output_name, step.mapping_key)
                spec = InputSpec((handle,)) if handle else None
            elif isinstance(source, FanIn):
                handles = []
                problem = None
                for item in source.items:
                    handle, problem = self._handle(item.node_key, item.output_name, None)
                    if problem:
                        break
                    handles.append(handle)
                spec = InputSpec(tuple(handles), is_list=True)
            else:
                assert isinstance(source, Collect)
                spec, problem = self._collected(source)
            if problem:
                self._skip(step, problem)
                return
            specs[name] = spec
        step.inputs = specs
        self._make_ready(step)

    def _handle(
        self, node_key: str, output_name: str, mapping_key: str | None
    ) -> tuple[InputHandle | None, str | None]:
        upstream = self.steps[self._upstream_key(node_key, mapping_key)]
        problem = self._unusable(upstream)
        if problem:
            return None, problem
        out = self.job.nodes[node_key].op.outs[output_name]
        key = mapping_key if out.is_dynamic else None
        handle = upstream.outputs.handle(upstream.key, output_name, key, out.metadata)
        if handle is None:
            return None, f"output {output_name!r} of step {upstream.key!r} was not produced"
        return handle, None

    def _collected(self, source: Collect) -> tuple[InputSpec | None, str | None]:
        producer = self.steps[source.source.node_key]
        problem = self._unusable(producer)
        if problem:
            return None, problem
        keys = producer.outputs.dynamic_keys(source.source.output_name)
        if keys is None:
            # like Dagster: a fan-out with no items (or not yielded at all) skips its collectors
            return None, (
                f"dynamic output {source.source.output_name!r} of step {producer.key!r} "
                "produced no items"
            )
        out_meta = self.job.nodes[source.node_key].op.outs[source.output_name].metadata
        handles = []
        for key in keys:
            if source.node_key == source.source.node_key:
                handles.append(producer.outputs.handle(producer.key, source.output_name, key, out_meta))
                continue
            mapped = self.steps[f"{source.node_key}[{key}]"]
            if mapped.status is StepStatus.FAILED:
                return None, f"upstream step {mapped.key!r} failed"
            if mapped.status is StepStatus.SKIPPED or mapped.outputs is None:
                continue
            handle = mapped.outputs.handle(mapped.key, source.output_name, None, out_meta)
            if handle is not None:
                handles.append(handle)
        return InputSpec(tuple(handles), is_list=True), None

    @staticmethod
    def _unusable(upstream: StepState) -> str | None:
        if upstream.status is StepStatus.FAILED:
            return f"upstream step {upstream.key!r} failed"
        if upstream.status is StepStatus.SKIPPED:
            return f"upstream step {upstream.key!r} was skipped"
        return None

    def _make_ready(self, step: StepState) -> None:
        step.status = StepStatus.READY
        heapq.heappush(self.ready, (*step.sort_key, step.key))

    def _skip(self, step: StepState, reason: str) -> None:
        step.status = StepStatus.SKIPPED
        self.recorder.record(EventType.STEP_SKIPPED, f"skipped: {reason}", step_key=step.key,
                             data={"reason": reason})
        self._finished(step)

    def _finished(self, step: StepState) -> None:
        """A step became final: expand its dynamic outputs, then release its dependents."""
        if step.status is StepStatus.SUCCEEDED:
            for out_name, out in step.node.op.outs.items():
                if out.is_dynamic:
                    self._expand(step, DynamicSource(step.node.key, out_name))
        for dependent in self.dependents.pop(step.key, []):
            dependent.waiting -= 1
            if dependent.waiting == 0:
                self._resolve(dependent)

    def _expand(self, producer: StepState, source: DynamicSource) -> None:
        keys = producer.outputs.dynamic_keys(source.output_name) if producer.outputs else None
        for index, key in enumerate(keys or []):
            for node in self.mapped_nodes.get(source, []):
                step_key = f"{node.key}[{key}]"
                if self._wanted(node, step_key):
                    self._instantiate(node, key, index)
        for collector in self.collectors.pop(source, []):
            for collect in collector.node.inputs.values():
                if isinstance(collect, Collect) and collect.source == source:
                    self._wait_on(collector, self._gathered_keys(collect, producer))

    # ---- submission and outcomes ----------------------------------------------------

    def _submit_ready(self) -> None:
        while self.ready and len(self.in_flight) < self.executor.max_concurrent:
            *_, key = heapq.heappop(self.ready)
            step = self.steps[key]
            task = self._task(step)
            self.recorder.accept(step.key, step.attempt)
            # forget the last attempt's start before submitting: an executor may start the
            # step (and report STEP_START) before submit returns
            self.started_at.pop(step.key, None)
            handle = self.executor.submit(task)
            step.status = StepStatus.IN_FLIGHT
            self.in_flight[handle] = step
            if step.node.op.timeout:
                self.deadlines[step.key] = time.monotonic() + step.node.op.timeout

    def _task(self, step: StepState) -> StepTask:
        plan = self.plan
        return StepTask(
            run_id=plan.run_id,
            step_key=step.key,
            node_key=step.node.key,
            attempt=step.attempt,
            job=plan.job_ref,
            mapping_key=step.mapping_key,
            op_config=plan.op_configs.get(step.node.key),
            resource_config=plan.resource_config,
            inputs=step.inputs,
            resource_overrides=plan.resource_overrides,
            default_io=plan.default_io,
            timeout=step.node.op.timeout,
            tags=step.node.op.tags,
            resources=plan.resources,
        )

    def _take(self, step_key: str, attempt: int) -> tuple[StepHandle, StepState] | None:
        for handle, step in self.in_flight.items():
            if step.key == step_key and step.attempt == attempt:
                return handle, step
        return None

    def _on_outcome(self, outcome: StepOutcome) -> None:
        taken = self._take(outcome.step_key, outcome.attempt)
        if taken is None:
            return  # a late or duplicate attempt: fenced off
        handle, step = taken
        del self.in_flight[handle]
        self.deadlines.pop(step.key, None)
        self.recorder.step_events(outcome.events)
        self.recorder.stop_accepting(step.key, step.attempt)
        if outcome.failure is None:
            step.status = StepStatus.SUCCEEDED
            outputs = StepOutputs(self.plan.run_id)
            for record in outcome.outputs:
                outputs.records[(record.output_name, record.mapping_key)] = record
            step.outputs = outputs
            self._finished(step)
        else:
            self._on_failure(step, outcome.failure)

    def _on_failure(self, step: StepState, failure: StepFailure) -> None:
        retry, delay = self._retry_decision(step, failure)
        data = {
            "kind": failure.kind,
            "error_type": failure.error_type,
            "stack": failure.stack,
            "metadata": failure.metadata,
        }
        if retry:
            self.recorder.record(
                EventType.STEP_UP_FOR_RETRY,
                f"attempt {step.attempt + 1} failed ({failure.kind}): {failure.message}; "
                f"retrying in {delay:.2f}s",
                step_key=step.key, level=30, attempt=step.attempt,
                data={**data, "delay_s": delay, "next_attempt": step.attempt + 1},
            )
            step.attempt += 1
            step.status = StepStatus.RETRY_WAIT
            self._retry_seq += 1
            heapq.heappush(self.retries, (time.monotonic() + delay, self._retry_seq, step.key))
            return
        step.status = StepStatus.FAILED
        step.failure = failure
        if self.first_failure is None:
            self.first_failure = (step.key, failure)
        self.recorder.record(EventType.STEP_FAILURE, f"{failure.kind}: {failure.message}",
                             step_key=step.key, level=40, attempt=step.attempt, data=data)
        self._finished(step)

    def _retry_decision(self, step: StepState, failure: StepFailure) -> tuple[bool, float]:
        if failure.kind == "canceled" or self.canceled:
            return False, 0.0
        if failure.retry_requested is not None:
            max_retries, wait = failure.retry_requested
            return step.attempt < max_retries, wait
        policy: RetryPolicy | None = step.node.op.retry_policy or self.job.retry_policy
        if policy is None or not failure.allow_retries or step.attempt >= policy.max_retries:
            return False, 0.0
        return True, policy.delay_for(step.attempt + 1)

    def _release_due_retries(self) -> None:
        now = time.monotonic()
        while self.retries and self.retries[0][0] <= now:
            _, _, key = heapq.heappop(self.retries)
            self._make_ready(self.steps[key])

    def _expire_deadlines(self) -> None:
        now = time.monotonic()
        for key in [k for k in self.deadlines if self._deadline(k) <= now]:
            if key not in self.started_at:
                # not started yet (queued in the engine): queue time does not count; look
                # again one timeout later, by when its live STEP_START has usually arrived
                self.deadlines[key] = now + self._timeout_of(key)
                continue
            taken = next(((h, s) for h, s in self.in_flight.items() if s.key == key), None)
            del self.deadlines[key]
            if taken is None:
                continue
            handle, step = taken
            del self.in_flight[handle]
            self.recorder.stop_accepting(step.key, step.attempt)
            self.executor.cancel(handle)
            timeout = step.node.op.timeout
            self._on_failure(
                step, StepFailure("timeout", f"step {step.key!r} ran past its timeout of {timeout:g}s")
            )

    # ---- cancel and the end -----------------------------------------------------------

    def _cancel_all(self, why: str) -> None:
        self.canceled = True
        for handle, step in list(self.in_flight.items()):
            self.recorder.stop_accepting(step.key, step.attempt)
            try:
                self.executor.cancel(handle)
            finally:
                step.status = StepStatus.FAILED
                step.failure = StepFailure("canceled", f"run {why} while the step ran")
                self.recorder.record(EventType.STEP_FAILURE, f"canceled: run {why} while the step ran",
                                     step_key=step.key, level=40, attempt=step.attempt,
                                     data={"kind": "canceled"})
        self.in_flight.clear()
        self.ready.clear()
        self.retries.clear()

    def _check_plan_finished(self) -> None:
        stuck = sorted(k for k, s in self.steps.items() if s.status not in FINAL)
        if stuck:
            raise AssertionError(
                f"plait bug: the run ended with steps that never finished: {stuck}. "
                "Please report it with the job definition."
            )

    @property
    def failed_steps(self) -> list[str]:
        return sorted(k for k, s in self.steps.items() if s.status is StepStatus.FAILED)

