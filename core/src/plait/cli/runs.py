"""``plait runs``: list, show and re-execute the runs kept in the instance (PLAIT_HOME)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from plait.cli.params import executor_option, parse_tags, tag_option, verbose_option

if TYPE_CHECKING:
    from plait._storage.base import RunRecord
    from plait.instance import Instance

STATUSES = ("STARTED", "SUCCESS", "FAILURE", "CANCELED")
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}


@click.group()
def runs() -> None:
    """List, show and re-execute stored runs."""


@runs.command("list")
@click.option("--job", "job_name", metavar="JOB", help="Only runs of this job.")
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False),
              help="Only runs that ended (or are) in this status.")
@tag_option
@click.option("--limit", "-n", type=click.IntRange(min=1), default=20, show_default=True,
              help="Show at most this many runs.")
def list_runs(job_name: str | None, status: str | None, tags: tuple[str, ...], limit: int) -> None:
    """List runs, newest first.

    \b
    Example:
      plait runs list --job daily --status FAILURE --tag env=prod -n 5
    """
    from rich.table import Table
    from rich.text import Text

    from plait import Instance, RunStatus
    from plait.cli.output import date_time, duration, stdout_console, styled_status

    with Instance() as instance:
        records = instance.storage.list_runs(
            job_name=job_name, status=RunStatus(status.upper()) if status else None,
            tags=parse_tags(tags) or None, limit=limit,
        )
    console = stdout_console()
    if not records:
        console.print(f"No runs in {instance.home} match.", highlight=False)
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("run id", "job", "status", "started", "duration", "tags"):
        table.add_column(column, no_wrap=column != "tags", overflow="fold")
    for record in records:
        took = record.end_time - record.start_time if record.end_time and record.start_time else None
        table.add_row(
            record.run_id, record.job_name, Text(*styled_status(record.status.value)),
            date_time(record.start_time), duration(took),
            Text(" ".join(f"{k}={v}" for k, v in sorted(record.tags.items()))),
        )
    console.print(table)


@runs.command("show")
@click.argument("run_id")
@click.option("--step", "step_key", metavar="STEP", help="Only the events of this step.")
@click.option("--level", metavar="LEVEL",
              help="Only events at this level or above: DEBUG, INFO, WARNING, ERROR, CRITICAL "
              "(or a number).")
def show(run_id: str, step_key: str | None, level: str | None) -> None:
    """Show a run: its steps, its events and logs, and the stack traces of failures.

    RUN_ID may be a unique prefix of the run id.

    \b
    Example:
      plait runs show 3f2a9c --step transform --level WARNING
    """
    from plait import Instance
    from plait.cli.errors import CommandError

    min_level = _level(level)
    with Instance() as instance:
        record = find_run(instance, run_id)
        all_events = instance.storage.get_events(record.run_id)
        if step_key is not None and not any(e.step_key == step_key for e in all_events):
            steps = sorted({e.step_key for e in all_events if e.step_key})
            raise CommandError(
                f"run {record.run_id} has no step {step_key!r}; its steps are: "
                f"{', '.join(steps) or 'none'}"
            )
        events = instance.storage.get_events(record.run_id, step_key=step_key, min_level=min_level)
    _print_run(record, all_events, events, show_steps=step_key is None)


@runs.command("reexecute")
@click.argument("run_id")
@click.option("--from-failure", is_flag=True,
              help="Run only what failed, was skipped or never ran; reuse the rest.")
@click.option("--step", "steps", multiple=True, metavar="STEP",
              help="Run only this step (repeatable), reusing its inputs from the run.")
@executor_option
@tag_option
@verbose_option
def reexecute_run(run_id: str, from_failure: bool, steps: tuple[str, ...], executor: str | None,
                  tags: tuple[str, ...], verbose: bool) -> None:
    """Run a stored run's job again, as a new run whose parent is RUN_ID.

    Outputs of steps that are not run again are loaded from where the parent run stored
    them; without --from-failure or --step, everything runs again.

    \b
    Example:
      plait runs reexecute 3f2a9c --from-failure
    """
    from plait import Instance, reexecute
    from plait.cli.run import finish, mapped_nodes, run_with_progress
    from plait.cli.target import load_target

    if from_failure and steps:
        raise click.UsageError("use --from-failure or --step, not both")
    extra_tags = parse_tags(tags)
    with Instance() as instance:
        record = find_run(instance, run_id)
        # loaded here for its friendly errors; a job with no pointer comes from its pickle
        job = load_target(record.job_pointer) if record.job_pointer else None
        result = run_with_progress(
            record.job_name, mapped_nodes(job) if job else [], verbose,
            lambda on_event: reexecute(
                record.run_id, from_failure=from_failure, steps=list(steps) or None,
                instance=instance, job=job, executor=executor, raise_on_error=False,
                on_event=on_event, tags=extra_tags or None,
            ),
        )
    finish(result)


def find_run(instance: Instance, run_id: str) -> RunRecord:
    """The run with this id, or the one run whose id starts with it."""
    from plait.cli.errors import CommandError

    record = instance.storage.get_run(run_id)
    if record is not None:
        return record
    matches = [r for r in instance.storage.list_runs() if r.run_id.startswith(run_id)] if run_id else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(r.run_id for r in matches[:5])
        raise CommandError(f"run id prefix {run_id!r} is ambiguous: it matches {listed}"
                           f"{', ...' if len(matches) > 5 else ''}; give more characters")
    raise CommandError(
        f"no run {run_id!r} in {instance.home}; `plait runs list` shows the stored runs "
        "(set PLAIT_HOME to look in another home)"
    )


def _level(level: str | None) -> int | None:
    from plait.cli.errors import CommandError

    if level is None:
        return None
    if level.isdigit():
        return int(level)
    if level.upper() in LEVELS:
        return LEVELS[level.upper()]
    raise CommandError(f"--level: unknown level {level!r}; use one of DEBUG, INFO, WARNING, "
                       "ERROR, CRITICAL, or a number")


def _print_run(record: RunRecord, all_events: list, events: list, show_steps: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    from plait.cli.output import clock, date_time, duration, stdout_console, styled_status
    from plait.cli.summary import StepFold
    from plait.events import EventType

    console = stdout_console()
    start = next((e for e in all_events if e.event_type is EventType.RUN_START), None)
    took = record.end_time - record.start_time if record.end_time and record.start_time else None
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    header.add_row("run", record.run_id)
    header.add_row("job", Text(record.job_name + (f"  ({record.job_pointer})" if record.job_pointer else "")))
    header.add_row("status", Text(*styled_status(record.status.value)))
    header.add_row("started", date_time(record.start_time))
    header.add_row("ended", f"{date_time(record.end_time)}  ({duration(took)})")
    if start is not None:
        header.add_row("executor", str(start.data.get("executor", "?")))
    if record.parent_run_id:
        header.add_row("parent run", record.parent_run_id)
    if record.tags:
        header.add_row("tags", Text(" ".join(f"{k}={v}" for k, v in sorted(record.tags.items()))))
    console.print(header)
    if show_steps:
        console.print()
        console.print(StepFold().extend(all_events).table())
    console.print()
    console.print(Text(f"Events ({len(events)})", style="bold"))
    for event in events:
        line = Text.assemble(
            (f"#{event.seq:<4}", "dim"), (clock(event.timestamp), "dim"), " ",
            (f"{event.level_name:<8}", _level_style(event.level)), " ",
            (event.event_type.value, "bold"),
            (f" {event.step_key}" if event.step_key else "", "cyan"),
            f": {event.message}" if event.message else "",
        )
        console.print(line, soft_wrap=True)
        stack = event.data.get("stack") if event.event_type in (
            EventType.STEP_FAILURE, EventType.STEP_UP_FOR_RETRY) else None
        if stack:
            console.print(Text(_indent(stack.rstrip()), style="red"), soft_wrap=True)


def _level_style(level: int) -> str:
    return "red" if level >= 40 else "yellow" if level >= 30 else "dim"


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines())
