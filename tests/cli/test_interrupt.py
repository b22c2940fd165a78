"""Ctrl-C during `plait run`: the run is canceled, recorded RUN_CANCELED, and plait exits
non-zero, leaving no process behind.

The op blocks until a file appears that the test never creates (it is created at the end
only to release anything left over); the test waits for the step's "started" line on the
subprocess's stdout (a reader thread feeds a queue; every wait has a timeout).
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading

import psutil
import pytest
from plait import EventType, Instance, RunStatus

from tests.cli.conftest import Project

TIMEOUT = 60.0

BLOCKING = '''
import os
import time

from plait import job, op


@op
def block(context) -> int:
    context.log.info("waiting for the release file")
    deadline = time.monotonic() + 120
    while not os.path.exists("release") and time.monotonic() < deadline:
        time.sleep(0.05)
    return 1


@op
def later(x: int) -> int:
    return x


@job
def blocking():
    later(block())
'''


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def wait_for_line(lines: queue.Queue, needle: str, seen: list[str]) -> str:
    while True:
        line = lines.get(timeout=TIMEOUT)
        if line is None:
            raise AssertionError(f"plait exited before printing {needle!r}:\n{''.join(seen)}")
        seen.append(line)
        if needle in line:
            return line


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_sigint_cancels_the_run(project: Project, executor: str) -> None:
    project.write("blocking.py", BLOCKING)
    proc = subprocess.Popen(
        [sys.executable, "-m", "plait.cli", "run", "blocking.py", "--executor", executor],
        cwd=project.path, env=project.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    children: list[psutil.Process] = []
    try:
        run_id = wait_for_line(lines, " of job blocking started", seen).split()[1]
        wait_for_line(lines, "block started", seen)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=TIMEOUT)
        reader.join(timeout=TIMEOUT)
        while not lines.empty():
            line = lines.get_nowait()
            if line is not None:
                seen.append(line)
    finally:
        (project.path / "release").touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=TIMEOUT)
    text = "".join(seen)
    assert code == 130, text
    assert "block canceled: run interrupted (SIGINT)" in text
    assert "later started" not in text
    assert f"Run {run_id} CANCELED" in text

    gone, alive = psutil.wait_procs(children, timeout=TIMEOUT)
    assert not alive, f"processes left behind: {alive}"

    shown = project.plait("runs", "show", run_id)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "CANCELED" in shown.stdout and "RUN_CANCELED" in shown.stdout
    with Instance(project.home) as instance:
        assert instance.storage.get_run(run_id).status is RunStatus.CANCELED
        kinds = [e.event_type for e in instance.storage.get_events(run_id)]
    assert kinds[-1] is EventType.RUN_CANCELED
    assert EventType.STEP_SUCCESS not in kinds[kinds.index(EventType.STEP_START):]
