"""Fixtures for CLI tests: a project folder with job files, and `plait` run as a real
subprocess there (``python -m plait.cli``), its home in the folder via PLAIT_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

COMMAND_TIMEOUT = 120

JOBS = '''
import os
from pathlib import Path

from plait import Config, DynamicOut, DynamicOutput, job, op


class Files(Config):
    counter: str = "counter.txt"
    flag: str = "flag"


def count(cfg, step):
    with open(cfg.counter, "a") as f:
        f.write(step + "\\n")


@op
def load(context) -> list[int]:
    context.log.info("loading 3 numbers")
    return [1, 2, 3]


@op
def total(context, xs: list[int]) -> int:
    context.log.info("summing %d", len(xs))
    context.log.debug("a debug line")
    return sum(xs)


@job(description="Adds three numbers.\\nSecond line.")
def ok():
    total(load())


@op
def explode(context, xs: list[int]) -> int:
    context.log.warning("about to explode")
    raise ValueError("boom: the numbers are wrong")


@op
def after(x: int) -> int:
    return x


@job
def failing():
    after(explode(load()))


@op
def extract(cfg: Files) -> list[int]:
    count(cfg, "extract")
    return [1, 2, 3]


@op
def transform(cfg: Files, xs: list[int]) -> int:
    count(cfg, "transform")
    if not Path(cfg.flag).exists():
        raise RuntimeError("the flag file is missing")
    return sum(xs)


@job
def flaky():
    transform(extract())
'''


@dataclass
class Project:
    """A folder to run `plait` in; ``home`` is its PLAIT_HOME."""

    path: Path
    home: Path
    env: dict[str, str]

    def write(self, name: str, text: str) -> Path:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
        return target

    def plait(self, *args: str, env: dict[str, str] | None = None,
              timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "plait.cli", *args],
            cwd=self.path, env={**self.env, **(env or {})}, capture_output=True, text=True,
            timeout=timeout,
        )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "PLAIT_HOME", "COLUMNS", "PLAIT_TRACEBACK")}
    env.update(NO_COLOR="1", **extra)
    return env


@pytest.fixture(autouse=True)
def no_process_left_behind():
    """Every `plait` a test starts (and anything it started) is gone when the test ends."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    new = [p for p in me.children(recursive=True) if p.pid not in before]
    _, alive = psutil.wait_procs(new, timeout=30)
    for proc in alive:
        proc.kill()
    assert not alive, f"processes left behind: {alive}"


def make_project(path: Path) -> Project:
    home = path / "home"
    proj = Project(path, home, clean_env(PLAIT_HOME=str(home)))
    proj.write("jobs.py", JOBS)
    return proj


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def run_id_of(result: subprocess.CompletedProcess[str]) -> str:
    """The run id `plait run` printed on its first line ("Run <id> of job ...")."""
    for line in result.stdout.splitlines():
        if line.startswith("Run ") and " of job " in line:
            return line.split()[1]
    raise AssertionError(f"no run id in the output:\n{output(result)}")
