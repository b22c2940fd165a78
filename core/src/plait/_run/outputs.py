"""Step outputs as the event log records them, and found again from it.

STEP_OUTPUT events carry everything needed to load an output later (the run that
produced it, its location and IO manager key), so results, re-execution and the CLI all
find outputs from events alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from plait.events import Event, EventType
from plait.executors.base import InputHandle, OutputRecord


@dataclass
class StepOutputs:
    """The stored outputs of one step, and the run that stored them."""

    run_id: str
    records: dict[tuple[str, str | None], OutputRecord] = field(default_factory=dict)

    def dynamic_keys(self, output_name: str) -> list[str] | None:
        keys = [mk for (name, mk) in self.records if name == output_name and mk is not None]
        return keys or None

    def handle(
        self, step_key: str, output_name: str, mapping_key: str | None, out_metadata: dict[str, Any]
    ) -> InputHandle | None:
        """Where a downstream step loads this output from (None if it was not produced)."""
        record = self.records.get((output_name, mapping_key))
        if record is None:
            return None
        return InputHandle(self.run_id, step_key, output_name, mapping_key, record.location,
                           record.io_manager_key, out_metadata)


def output_event_data(record: OutputRecord, producer_run_id: str) -> dict[str, Any]:
    return {
        "output_name": record.output_name,
        "mapping_key": record.mapping_key,
        "location": record.location,
        "size": record.size,
        "io_manager_key": record.io_manager_key,
        "metadata": record.metadata,
        "producer_run_id": producer_run_id,
    }


def outputs_from_events(events: Iterable[Event]) -> dict[str, StepOutputs]:
    """Every step's stored outputs, from a run's STEP_OUTPUT events (successful steps)."""
    found: dict[str, StepOutputs] = {}
    failed: set[str] = set()
    for event in events:
        if event.step_key is None:
            continue
        if event.event_type is EventType.STEP_START:
            found.pop(event.step_key, None)  # a new attempt replaces what an old one stored
        elif event.event_type is EventType.STEP_FAILURE:
            failed.add(event.step_key)
        elif event.event_type is EventType.STEP_OUTPUT:
            data = event.data
            run_id = data.get("producer_run_id") or event.run_id
            step = found.setdefault(event.step_key, StepOutputs(run_id))
            record = OutputRecord(
                data["output_name"], data.get("mapping_key"), data.get("location"), data.get("size"),
                data.get("io_manager_key", "io_manager"), data.get("metadata") or {},
            )
            step.records[(record.output_name, record.mapping_key)] = record
    return {key: outs for key, outs in found.items() if key not in failed}
