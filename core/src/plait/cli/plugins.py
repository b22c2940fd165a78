"""The root command group: core commands imported on demand, plus plugin commands.

A plugin adds a command by declaring an entry point in the ``plait.cli`` group whose
value loads to a ``click.Command`` or ``click.Group``; it appears under the entry point's
name (plait-celery declares ``celery = "plait_celery.cli:celery"``: ``plait celery worker``).

Nothing is imported until a command is needed: ``plait run`` imports only the run
command and never looks at plugins; ``plait --help`` imports the command modules (click
only) and each plugin's command module, so a plugin should import its engine inside its
commands. A plugin that fails to load costs a one-line warning, never the whole CLI.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from plait.cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    explain,
    print_error,
)

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

ENTRY_POINT_GROUP = "plait.cli"


class PlaitGroup(click.Group):
    """A click group whose commands are ``module:attr`` strings and entry points."""

    def __init__(self, *args: Any, core_commands: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.core_commands = core_commands
        self._entry_points: dict[str, EntryPoint] | None = None
        self._loaded: dict[str, click.Command] = {}
        self._broken: dict[str, str] = {}

    # -- finding commands --------------------------------------------------------------

    def list_commands(self, ctx: click.Context) -> list[str]:
        plugins = [name for name in self._plugins() if name not in self.core_commands]
        return sorted(self.core_commands) + sorted(plugins)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._loaded:
            return self._loaded[cmd_name]
        if cmd_name in self.core_commands:
            module_name, _, attr = self.core_commands[cmd_name].partition(":")
            command = getattr(importlib.import_module(module_name), attr)
        elif cmd_name in self._broken:
            return None
        else:
            entry_point = self._plugins().get(cmd_name)
            if entry_point is None:
                return None
            command = self._load_plugin(cmd_name, entry_point)
            if command is None:
                return None
        self._loaded[cmd_name] = command
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = click.utils.make_str(args[0]) if args else ""
        if name and name not in self.core_commands:
            self.get_command(ctx, name)
            if name in self._broken:
                raise click.UsageError(
                    f"the command {name!r} comes from a plugin that failed to load: "
                    f"{self._broken[name]}. Reinstall or upgrade the package that provides it.",
                    ctx,
                )
        return super().resolve_command(ctx, args)

    def _plugins(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            from importlib.metadata import entry_points

            found: dict[str, EntryPoint] = {}
            for entry_point in entry_points(group=ENTRY_POINT_GROUP):
                if entry_point.name in self.core_commands:
                    _warn(f"plugin {_origin(entry_point)} declares the command "
                          f"{entry_point.name!r}, which is plait's own; the plugin's is ignored")
                    continue
                found.setdefault(entry_point.name, entry_point)
            self._entry_points = found
        return self._entry_points

    def _load_plugin(self, name: str, entry_point: EntryPoint) -> click.Command | None:
        try:
            command = entry_point.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if isinstance(command, click.Command):
                return command
            problem = (f"it loads to an object of type {type(command).__name__}, "
                       "not a click.Command or click.Group")
        self._broken[name] = f"{_origin(entry_point)}: {problem}"
        _warn(f"plugin command {name!r} is unavailable ({self._broken[name]})")
        return None

    # -- running them ------------------------------------------------------------------

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a PlaitError or bad input becomes one paragraph, not a traceback."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            print_error("interrupted")
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            # `plait runs list | head`: the reader left; say nothing more, to nobody
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(EXIT_FAILED)
        except Exception as exc:
            message = explain(exc)
            if message is None:
                raise  # a bug, not bad input: its traceback is what a report needs
            print_error(message, exc)
            ctx.exit(EXIT_BAD_INPUT)


def _origin(entry_point: EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    where = f" from {dist.name}" if dist is not None else ""
    return f"{entry_point.value}{where}"


def _warn(message: str) -> None:
    click.echo(click.style("Warning: ", fg="yellow", bold=True) + message, err=True)
