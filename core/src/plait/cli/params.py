"""Option values shared by commands: ``--tag k=v`` and ``--select a,b``."""

from __future__ import annotations

from collections.abc import Iterable

import click


def parse_tags(values: Iterable[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for value in values:
        key, sep, tag_value = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint="'--tag'")
        tags[key.strip()] = tag_value
    return tags


def parse_selection(values: Iterable[str]) -> list[str] | None:
    clauses = [part.strip() for value in values for part in value.split(",") if part.strip()]
    return clauses or None


tag_option = click.option(
    "--tag", "tags", multiple=True, metavar="KEY=VALUE",
    help="Tag the run (repeatable).",
)
executor_option = click.option(
    "--executor", "-e", metavar="NAME",
    help="Executor to use: in_process, multiprocess, dask, celery, or a plugin's name. "
    "Wins over 'execution:' in the run config.",
)
verbose_option = click.option(
    "--verbose", "-v", is_flag=True, help="Show every event and debug log lines."
)
