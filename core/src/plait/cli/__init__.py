"""The ``plait`` command line.

Commands live in small modules (``run``, ``runs``, ``jobs``) that import nothing but
click at module level: plait's core and rich are imported inside the commands, so that
``plait --help`` starts fast. Plugins add commands through the ``plait.cli`` entry-point
group (see ``plait.cli.plugins``).

Exit codes: 0 success, 1 the run failed, 2 bad input (unknown target, invalid config,
unknown run id...), 130 interrupted (Ctrl-C canceled the run).
"""

from __future__ import annotations

import click

from plait.cli.plugins import PlaitGroup

CORE_COMMANDS = {
    "run": "plait.cli.run:run",
    "runs": "plait.cli.runs:runs",
    "jobs": "plait.cli.jobs:jobs",
}


@click.group(
    cls=PlaitGroup,
    core_commands=CORE_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="plait", prog_name="plait")
def cli() -> None:
    """plait: run data jobs on interchangeable executors, and inspect their runs.

    Runs and outputs are kept under .plait/ in the working directory (set PLAIT_HOME to
    keep them elsewhere).
    """


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``plait = "plait.cli:main"``)."""
    cli.main(args=argv, prog_name="plait")


__all__ = ["cli", "main"]
