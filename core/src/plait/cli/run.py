"""``plait run TARGET``: run a job here, with live progress, and keep the run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from plait.cli.params import (
    executor_option,
    parse_selection,
    parse_tags,
    tag_option,
    verbose_option,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from plait._defs.job import JobDefinition
    from plait.result import RunResult


@click.command(short_help="Run a job from a file or module, with live progress.")
@click.argument("target")
@click.option(
    "--config", "-c", "configs", multiple=True, metavar="FILE.yaml",
    type=click.Path(dir_okay=False),
    help="Run config YAML (repeatable; later files are merged over earlier ones).",
)
@executor_option
@click.option(
    "--select", "-s", "selection", multiple=True, metavar="CLAUSES",
    help="Run only some ops: 'name', '*name' (with ancestors), 'name*' (with descendants), "
    "'+name' (one level up); comma-separated or repeated.",
)
@tag_option
@verbose_option
def run(target: str, configs: tuple[str, ...], executor: str | None, selection: tuple[str, ...],
        tags: tuple[str, ...], verbose: bool) -> None:
    """Run a job: TARGET is path/to/file.py[:job] or package.module[:job].

    The job name may be left out when the module defines one job. Exit code 0 when the
    run succeeds, 1 when it fails, 130 when Ctrl-C canceled it.

    \b
    Example:
      plait run jobs/etl.py:daily -c base.yaml -c prod.yaml --executor multiprocess
    """
    from plait import Instance, load_run_config
    from plait.cli.target import load_target

    tag_map = parse_tags(tags)
    job = load_target(target)
    run_config = load_run_config(*configs) if configs else None
    with Instance() as instance:
        result = run_with_progress(
            job.name, mapped_nodes(job), verbose,
            lambda on_event: job.execute(
                run_config, executor=executor, instance=instance,
                op_selection=parse_selection(selection), tags=tag_map,
                raise_on_error=False, on_event=on_event,
            ),
        )
    finish(result)


def mapped_nodes(job: JobDefinition) -> list[str]:
    """Nodes that run as mapped steps (``op[key]``), never under their own key."""
    return [key for key, node in job.nodes.items() if node.mapped_over is not None]


def run_with_progress(job_name: str, mapped: list[str], verbose: bool,
                      start: Callable[..., RunResult]) -> RunResult:
    """Run ``start(on_event)`` with the live display; Ctrl-C cancels the run."""
    import signal

    from plait.cli.output import stdout_console
    from plait.cli.progress import RunProgress

    # A shell may start us with SIGINT ignored (a background job); Ctrl-C must cancel.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    progress = RunProgress(stdout_console(), job_name, mapped_nodes=mapped, verbose=verbose)
    with progress:
        return start(progress)


def finish(result: RunResult) -> None:
    """Print the summary and the failures, and exit with the run's exit code."""
    from rich.text import Text

    from plait._storage.base import RunStatus
    from plait.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED
    from plait.cli.output import duration, stdout_console, styled_status
    from plait.cli.summary import StepFold, final_failures

    console = stdout_console()
    events = result.events
    console.print()
    console.print(StepFold().extend(events).table())
    for failure in final_failures(events):
        console.print()
        console.print(Text.assemble(("Step ", "red"), (failure.step_key or "", "bold red"),
                                    (f" failed: {failure.message}", "red")), soft_wrap=True)
        stack = failure.data.get("stack")
        if stack:
            console.print(Text(stack.rstrip(), style="dim"), soft_wrap=True)
    took = events[-1].timestamp - events[0].timestamp if events else None
    console.print()
    line = Text.assemble("Run ", (result.run_id, "bold"), " ", styled_status(result.status.value),
                         f" in {duration(took)}")
    if result.status is not RunStatus.SUCCESS:
        line.append(f"  (details: plait runs show {result.run_id})", style="dim")
    console.print(line, soft_wrap=True)
    if result.status is RunStatus.CANCELED:
        raise SystemExit(EXIT_INTERRUPTED)
    if result.status is not RunStatus.SUCCESS:
        raise SystemExit(EXIT_FAILED)
