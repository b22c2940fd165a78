"""``plait jobs list TARGET``: the jobs a file or module defines."""

from __future__ import annotations

import click


@click.group()
def jobs() -> None:
    """Inspect the jobs defined in code."""


@jobs.command("list")
@click.argument("target")
def list_jobs(target: str) -> None:
    """List the jobs TARGET (path/to/file.py or package.module[:job]) defines, with their ops.

    \b
    Example:
      plait jobs list jobs/etl.py
    """
    from rich.table import Table
    from rich.text import Text

    from plait.cli.output import stdout_console
    from plait.cli.target import jobs_at

    found = jobs_at(target)
    console = stdout_console()
    if not found:
        console.print(f"{target} defines no jobs (a job is a module-level @job or graph.to_job(...)).")
        return
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("job", no_wrap=True)
    table.add_column("ops", overflow="fold")
    table.add_column("executor", no_wrap=True)
    table.add_column("description", overflow="fold")
    for attr, job in sorted(found.items()):
        name = attr if attr == job.name else f"{attr} ({job.name})"
        executor = job.executor if isinstance(job.executor, str) else getattr(job.executor, "name", None)
        table.add_row(name, Text(", ".join(job.nodes)), executor or "in_process",
                      Text((job.description or "").strip().splitlines()[0] if job.description else ""))
    console.print(table)
