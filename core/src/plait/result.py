"""``RunResult``: how a run ended, its events, and its outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from plait_io import InputContext, IOManager, OutputContext

from plait._run.outputs import outputs_from_events
from plait._storage.base import RunStatus
from plait.errors import PlaitError, PlaitStepError, RunCanceledError
from plait.events import Event, EventType

if TYPE_CHECKING:
    from plait._defs.job import JobDefinition
    from plait.executors.base import StepFailure


class RunResult:
    """The result of ``job.execute``: ``success``, ``run_id``, ``events`` and outputs."""

    def __init__(
        self,
        job: JobDefinition,
        run_id: str,
        status: RunStatus,
        events: list[Event],
        resources: Mapping[str, Any],
        first_failure: tuple[str, StepFailure] | None = None,
    ) -> None:
        self.job = job
        self.run_id = run_id
        self.status = status
        self.events = events
        self._resources = resources
        self._first_failure = first_failure

    @property
    def success(self) -> bool:
        return self.status is RunStatus.SUCCESS

    def events_for(self, step_key: str) -> list[Event]:
        """The events of one step (all attempts), in order."""
        return [e for e in self.events if e.step_key == step_key]

    def step_status(self) -> dict[str, str]:
        """Each step's final state: succeeded, failed, skipped (reused steps: succeeded)."""
        status: dict[str, str] = {}
        for event in self.events:
            if event.step_key is None:
                continue
            if event.event_type is EventType.STEP_SUCCESS:
                status[event.step_key] = "succeeded"
            elif event.event_type is EventType.STEP_FAILURE:
                status[event.step_key] = "failed"
            elif event.event_type is EventType.STEP_SKIPPED:
                status[event.step_key] = "skipped"
            elif event.event_type is EventType.STEP_OUTPUT and event.data.get(
                "producer_run_id", event.run_id
            ) != event.run_id:
                status[event.step_key] = "succeeded"  # reused from a parent run
        return status

    def output_for(self, op_or_step: str, output_name: str = "result") -> Any:
        """An output's value, loaded through its IO manager.

        For a mapped op (``op``) or a dynamic output, a dict ``{mapping_key: value}``.
        """
        outputs = outputs_from_events(self.events)
        if op_or_step in outputs:
            step = outputs[op_or_step]
            records = {mk: rec for (name, mk), rec in step.records.items() if name == output_name}
            if None in records:
                return self._load(step.run_id, op_or_step, records[None])
            if records:
                return {mk: self._load(step.run_id, op_or_step, rec) for mk, rec in records.items()}
        mapped = {
            key[len(op_or_step) + 1 : -1]: outs
            for key, outs in outputs.items()
            if key.startswith(op_or_step + "[") and key.endswith("]")
        }
        values = {
            mk: self._load(outs.run_id, f"{op_or_step}[{mk}]", outs.records[(output_name, None)])
            for mk, outs in mapped.items()
            if (output_name, None) in outs.records
        }
        if values:
            return values
        produced = sorted(f"{k}.{n}" for k, o in outputs.items() for (n, _) in o.records)
        raise PlaitError(
            f"run {self.run_id} has no output {output_name!r} of {op_or_step!r}; "
            f"outputs it stored: {', '.join(dict.fromkeys(produced)) or 'none'}"
        )

    def _load(self, producer_run_id: str, step_key: str, record: Any) -> Any:
        manager = self._resources.get(record.io_manager_key)
        if not isinstance(manager, IOManager):
            raise PlaitError(f"no IO manager {record.io_manager_key!r} to load {step_key}.{record.output_name}")
        node_key = step_key.split("[", 1)[0]
        node = self.job.nodes.get(node_key)
        out = node.op.outs.get(record.output_name) if node else None
        upstream = OutputContext(producer_run_id, step_key, record.output_name, record.mapping_key,
                                 dict(out.metadata) if out else {})
        return manager.load_input(InputContext(self.run_id, "<result>", record.output_name, upstream, record.location))

    def raise_for_status(self) -> None:
        """Raise the first step failure (the op's own exception when it is available)."""
        if self.status is RunStatus.CANCELED:
            raise RunCanceledError(f"run {self.run_id} of job {self.job.name!r} was canceled")
        if self.status is RunStatus.SUCCESS or self._first_failure is None:
            return
        step_key, failure = self._first_failure
        exc = failure.exception
        if exc is not None:
            note = f"(raised by step {step_key!r} of run {self.run_id})"
            if note not in getattr(exc, "__notes__", ()):  # raise_for_status may be called again
                exc.add_note(note)
            raise exc
        raise PlaitStepError(step_key, failure.message, failure.error_type, failure.stack)

    def __repr__(self) -> str:
        return f"<RunResult {self.run_id} {self.status.value}>"
