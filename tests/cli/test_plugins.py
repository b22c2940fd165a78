"""`plait --help` and plugin commands from the `plait.cli` entry-point group.

Plugins here are real entry points: a ``*.dist-info`` folder with ``entry_points.txt`` on
PYTHONPATH is an installed distribution as far as ``importlib.metadata`` is concerned.
"""

from __future__ import annotations

import importlib.util

import pytest

from tests.cli.conftest import Project, output

CORE = ("jobs", "run", "runs")


def install_plugin(project: Project, dist_name: str, entry_points: str, modules: dict[str, str]) -> dict:
    site = project.path / "site"
    dist = site / f"{dist_name.replace('-', '_')}-0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[plait.cli]\n{entry_points}\n")
    for name, text in modules.items():
        project.write(f"site/{name}", text)
    return {"PYTHONPATH": str(site)}


def listed_commands(help_text: str) -> list[str]:
    section = help_text[help_text.index("Commands:"):].splitlines()[1:]
    return [line.split()[0] for line in section if line.startswith("  ") and line.strip()]


def test_help_lists_the_core_commands(project: Project) -> None:
    result = project.plait("--help")
    assert result.returncode == 0, output(result)
    assert "Usage: plait" in result.stdout
    assert set(CORE) <= set(listed_commands(result.stdout))
    assert "Traceback" not in output(result)
    for command in ("run", "runs", "jobs", "runs show", "runs list", "runs reexecute", "jobs list"):
        sub = project.plait(*command.split(), "--help")
        assert sub.returncode == 0, output(sub)
        assert "Example:" in sub.stdout or command in ("runs", "jobs")


def test_version(project: Project) -> None:
    result = project.plait("--version")
    assert result.returncode == 0
    assert "plait, version" in result.stdout


HELLO = '''
import click

@click.group()
def hello():
    """Say hello (a test plugin)."""

@hello.command()
@click.option("--name", default="world")
def greet(name):
    """Greet someone."""
    click.echo(f"hello, {name}")
'''


def test_a_plugin_group_becomes_a_subcommand(project: Project) -> None:
    env = install_plugin(project, "plait-hello", "hello = hello_plugin:hello",
                         {"hello_plugin.py": HELLO})
    help_result = project.plait("--help", env=env)
    assert help_result.returncode == 0, output(help_result)
    assert "hello" in listed_commands(help_result.stdout)
    assert "Say hello (a test plugin)." in help_result.stdout

    greet = project.plait("hello", "greet", "--name", "plait", env=env)
    assert greet.returncode == 0, output(greet)
    assert greet.stdout.strip() == "hello, plait"


def test_a_broken_plugin_is_a_one_line_warning(project: Project) -> None:
    env = install_plugin(
        project, "plait-broken",
        "broken = broken_plugin:cli\nnotacommand = odd_plugin:VALUE\nhello = hello_plugin:hello",
        {"broken_plugin.py": "raise ImportError('the engine library is missing')\n",
         "odd_plugin.py": "VALUE = 42\n", "hello_plugin.py": HELLO},
    )
    result = project.plait("--help", env=env)
    assert result.returncode == 0, output(result)
    commands = listed_commands(result.stdout)
    assert set(CORE) | {"hello"} <= set(commands)
    assert "broken" not in commands and "notacommand" not in commands
    warnings = [line for line in result.stderr.splitlines() if "'broken'" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("Warning: plugin command 'broken' is unavailable")
    assert "the engine library is missing" in warnings[0]
    assert any("'notacommand'" in line and "not a click.Command" in line
               for line in result.stderr.splitlines())
    assert "Traceback" not in output(result)

    core = project.plait("run", "jobs.py:ok", env=env)  # core commands never load plugins
    assert core.returncode == 0, output(core)
    assert "Warning" not in core.stderr

    invoked = project.plait("broken", env=env)
    assert invoked.returncode == 2
    assert "failed to load" in invoked.stderr and "the engine library is missing" in invoked.stderr
    assert "Traceback" not in output(invoked)


def test_a_plugin_cannot_replace_a_core_command(project: Project) -> None:
    env = install_plugin(project, "plait-evil", "run = hello_plugin:hello", {"hello_plugin.py": HELLO})
    result = project.plait("--help", env=env)
    assert result.returncode == 0
    assert "Run a job" in result.stdout
    assert "declares the command 'run', which is plait's own" in result.stderr


def test_celery_plugin_adds_plait_celery_worker(project: Project) -> None:
    try:
        spec = importlib.util.find_spec("plait_celery.cli")
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        pytest.skip("plait-celery has no plait_celery.cli module yet (its `celery` command "
                    "group is declared but not written); the mechanism is tested above")
    result = project.plait("celery", "--help")
    assert result.returncode == 0, output(result)
    assert "worker" in result.stdout
    assert "celery" in listed_commands(project.plait("--help").stdout)

