"""Per-step state folded from a run's events: the live counts, the summary table, the
failures to show. One fold serves ``plait run`` (events as they arrive) and ``plait runs
show`` (events from storage)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from plait.cli.output import duration, styled_status

if TYPE_CHECKING:
    from rich.table import Table

    from plait.events import Event


@dataclass
class StepRow:
    key: str
    status: str = "pending"
    """running, retrying, succeeded, failed, canceled, skipped or reused."""
    attempts: int = 0
    started: float | None = None
    ended: float | None = None
    note: str = ""
    """Why it failed or was skipped, or which run it was reused from."""

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started


FINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "skipped", "reused"})


class StepFold:
    """Step rows in order of first appearance, updated one event at a time."""

    def __init__(self) -> None:
        self.rows: dict[str, StepRow] = {}

    def row(self, key: str) -> StepRow:
        if key not in self.rows:
            self.rows[key] = StepRow(key)
        return self.rows[key]

    def add(self, event: Event) -> StepRow | None:
        """Fold one event in; the row it changed, if any."""
        from plait.events import EventType

        if event.step_key is None:
            return None
        kind = event.event_type
        row = self.row(event.step_key)
        if kind is EventType.STEP_START:
            row.status = "running"
            row.attempts += 1
            row.started = row.started or event.timestamp
        elif kind is EventType.STEP_SUCCESS:
            row.status, row.ended, row.note = "succeeded", event.timestamp, ""
        elif kind is EventType.STEP_FAILURE:
            row.status = "canceled" if event.data.get("kind") == "canceled" else "failed"
            row.ended, row.note = event.timestamp, event.message
        elif kind is EventType.STEP_UP_FOR_RETRY:
            row.status, row.note = "retrying", event.message
        elif kind is EventType.STEP_SKIPPED:
            row.status, row.note = "skipped", event.data.get("reason") or event.message
        elif kind is EventType.LOG and "reused_from" in event.data:
            row.status, row.note = "reused", f"from run {event.data['reused_from']}"
        else:
            return None
        return row

    def extend(self, events: Iterable[Event]) -> StepFold:
        for event in events:
            self.add(event)
        return self

    def count(self, *statuses: str) -> int:
        return sum(1 for row in self.rows.values() if row.status in statuses)

    def table(self) -> Table:
        from rich.table import Table
        from rich.text import Text

        table = Table(title="Steps", title_justify="left", show_edge=False, pad_edge=False)
        table.add_column("step", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("attempts", justify="right")
        table.add_column("duration", justify="right", no_wrap=True)
        table.add_column("note", overflow="fold")
        for row in self.rows.values():
            table.add_row(
                Text(row.key),  # plain text: a mapped key like "op[east]" is not rich markup
                Text(*styled_status(row.status)),
                str(row.attempts),
                duration(row.seconds),
                Text(row.note.splitlines()[0] if row.note else ""),
            )
        return table


def final_failures(events: Iterable[Event]) -> list[Event]:
    """The STEP_FAILURE event that ended each failed step (not canceled ones)."""
    from plait.events import EventType

    last: dict[str, Event] = {}
    for event in events:
        if event.event_type is EventType.STEP_FAILURE and event.step_key:
            last[event.step_key] = event
        elif event.event_type is EventType.STEP_START and event.step_key:
            last.pop(event.step_key, None)
    return [e for e in last.values() if e.data.get("kind") != "canceled"]
