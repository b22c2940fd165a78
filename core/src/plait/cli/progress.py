"""Live progress of a run, fed by ``job.execute(on_event=...)``.

Events arrive from the coordinator thread and from executor threads (log lines while a
step runs), so the fold is updated under a lock and printing happens outside it: rich's
live display takes its own lock to render the status line, which reads the fold.

Every step transition and log line is printed as one line as it happens; on a terminal
a status line (steps done/total, running, failed) stays below them until the run ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from plait.cli.output import clock, duration
from plait.cli.summary import FINAL_STATUSES, StepFold

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from plait.events import Event

LEVEL_STYLES = {logging.WARNING: "yellow", logging.ERROR: "red", logging.CRITICAL: "bold red"}


class RunProgress:
    """The ``on_event`` callback of a CLI run; use it as a context manager around the run."""

    def __init__(self, console: Console, job_name: str, *, mapped_nodes: Iterable[str] = (),
                 verbose: bool = False) -> None:
        self.console = console
        self.job_name = job_name
        self.verbose = verbose
        self.fold = StepFold()
        self.run_id: str | None = None
        self._mapped = set(mapped_nodes)
        self._planned: set[str] = set()
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._spinner: Any = None
        self._silenced = False

    def __enter__(self) -> RunProgress:
        if self.console.is_terminal:
            from rich.live import Live
            from rich.spinner import Spinner

            self._spinner = Spinner("dots", style="blue")
            self._live = Live(self, console=self.console, transient=True, refresh_per_second=8)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # -- events (any thread) -----------------------------------------------------------

    def __call__(self, event: Event) -> None:
        from plait.events import EventType

        with self._lock:
            row = self.fold.add(event)
            counts = self._counts() if row is not None and row.status in FINAL_STATUSES else None
            if event.event_type is EventType.RUN_START:
                self.run_id = event.run_id
                self._planned = set(event.data.get("selected") or ()) - self._mapped
        if self._silenced:
            return
        try:
            line = self._line(event)
            if line is not None and counts and self._live is None:
                line.append(f"  [{counts}]", style="dim")  # no status line in a log: count here
            if line is not None:
                self.console.print(line, soft_wrap=True)
        except (Exception, SystemExit):  # noqa: BLE001 - the display must not fail the run
            # rich raises SystemExit when stdout is a closed pipe (`plait run ... | head`)
            self._silenced = True

    def _line(self, event: Event) -> Text | None:
        from rich.text import Text

        from plait.events import EventType

        kind = event.event_type
        if kind is EventType.RUN_START:
            parent = event.data.get("parent_run_id")
            return Text.assemble(
                "Run ", (event.run_id, "bold"), f" of job {self.job_name} started on "
                f"executor {event.data.get('executor', '?')}",
                f" (re-executing run {parent})" if parent else "",
            )
        if event.step_key is None:
            return Text(f"{clock(event.timestamp)}  {event.message}", style="dim") if self.verbose else None
        head = Text.assemble((clock(event.timestamp), "dim"), "  ", (event.step_key, "bold"), " ")
        if kind is EventType.STEP_START:
            attempt = (event.attempt or 0) + 1
            head.append("started" + (f" (attempt {attempt})" if attempt > 1 else ""), style="blue")
        elif kind is EventType.STEP_SUCCESS:
            head.append(f"succeeded in {duration(event.data.get('duration_s'))}", style="green")
        elif kind is EventType.STEP_FAILURE and event.data.get("kind") == "canceled":
            head.append(event.message, style="yellow")
        elif kind is EventType.STEP_FAILURE:
            head.append(f"failed: {event.message}", style="red")
        elif kind is EventType.STEP_UP_FOR_RETRY:
            head.append(event.message, style="yellow")
        elif kind is EventType.STEP_SKIPPED:
            head.append(event.message, style="dim")
        elif kind is EventType.LOG and "reused_from" in event.data:
            head.append(f"reused the outputs of run {event.data['reused_from']}", style="cyan")
        elif kind is EventType.LOG and (self.verbose or event.level >= logging.INFO):
            head.append(f"{event.level_name} ", style=LEVEL_STYLES.get(event.level, "dim"))
            head.append(event.message)
        elif self.verbose:
            head.append(f"{kind.value} {event.message}", style="dim")
        else:
            return None
        return head

    def _counts(self) -> str:
        """``3/5 steps done, 1 failed, 1 skipped`` (call with the lock held)."""
        fold = self.fold
        total = len(set(fold.rows) | self._planned)
        text = f"{fold.count('succeeded', 'reused')}/{total} steps done"
        failed = fold.count("failed", "canceled")
        skipped = fold.count("skipped")
        return text + (f", {failed} failed" if failed else "") + (f", {skipped} skipped" if skipped else "")

    # -- the status line (rich's refresh thread) ----------------------------------------

    def __rich__(self) -> Any:
        from rich.text import Text

        with self._lock:
            counts = self._counts()
            running = [row.key for row in self.fold.rows.values() if row.status == "running"]
        status = Text(counts, style="bold")
        if running:
            shown = ", ".join(running[:4]) + (f" +{len(running) - 4}" if len(running) > 4 else "")
            status.append(f"; running: {shown}", style="blue")
        self._spinner.update(text=status)
        return self._spinner
