"""`plait run`: progress, summary, exit codes, run config, selection, tags, executors.

Every command runs as a real subprocess in a tmp project whose PLAIT_HOME is tmp/home;
what it stored is then read back through the public API (``Instance``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from plait import EventType, Instance, RunStatus

from tests.cli.conftest import Project, clean_env, output, run_id_of


def step_starts(project: Project, run_id: str) -> list[str]:
    with Instance(project.home) as instance:
        return [e.step_key for e in instance.storage.get_events(run_id)
                if e.event_type is EventType.STEP_START]


def test_success_prints_run_id_progress_and_summary(project: Project) -> None:
    result = project.plait("run", "jobs.py:ok")
    assert result.returncode == 0, output(result)
    run_id = run_id_of(result)
    out = result.stdout
    assert f"Run {run_id} of job ok started on executor in_process" in out
    for line in ("load started", "load INFO loading 3 numbers", "total started",
                 "total INFO summing 3", "total succeeded in"):
        assert line in out
    assert "a debug line" not in out  # debug logs only with -v
    summary = out[out.index("Steps"):]
    assert "load" in summary and "total" in summary and "succeeded" in summary
    assert "attempts" in summary and "duration" in summary
    assert f"Run {run_id} SUCCESS" in out
    assert "Traceback" not in output(result)
    with Instance(project.home) as instance:
        record = instance.storage.get_run(run_id)
        assert record.status is RunStatus.SUCCESS
        assert record.job_pointer == "jobs.py:ok"
    assert (project.home / "storage" / run_id / "total" / "result").is_file()


def test_verbose_shows_every_event_and_debug_logs(project: Project) -> None:
    result = project.plait("run", "jobs.py:ok", "-v")
    assert result.returncode == 0, output(result)
    assert "total DEBUG a debug line" in result.stdout
    assert "HANDLED_OUTPUT" in result.stdout


def test_default_home_is_dot_plait_in_the_working_directory(project: Project) -> None:
    project.env = clean_env()  # no PLAIT_HOME
    result = project.plait("run", "jobs.py:ok")
    assert result.returncode == 0, output(result)
    run_id = run_id_of(result)
    assert (project.path / ".plait" / "runs.db").is_file()
    assert (project.path / ".plait" / "storage" / run_id / "load" / "result").is_file()
    assert not project.home.exists()


def test_failure_exits_1_with_the_error_and_its_stack(project: Project) -> None:
    result = project.plait("run", "jobs.py:failing")
    assert result.returncode == 1, output(result)
    out = result.stdout
    assert "explode WARNING about to explode" in out
    assert "explode failed: error: ValueError: boom: the numbers are wrong" in out
    assert "after skipped" in out
    summary = out[out.index("Steps"):]
    assert "failed" in summary and "skipped" in summary
    assert "Step explode failed: error: ValueError: boom: the numbers are wrong" in out
    assert 'raise ValueError("boom: the numbers are wrong")' in out  # the op's stack trace
    run_id = run_id_of(result)
    assert f"Run {run_id} FAILURE" in out
    assert f"plait runs show {run_id}" in out
    with Instance(project.home) as instance:
        assert instance.storage.get_run(run_id).status is RunStatus.FAILURE


def test_a_module_target_with_one_job_needs_no_job_name(project: Project) -> None:
    project.write("pipelines/__init__.py", "")
    project.write("pipelines/etl.py", """
        from plait import job, op

        @op
        def hello(context) -> str:
            context.log.info("hello from a package")
            return "hi"

        @job
        def etl():
            hello()
    """)
    result = project.plait("run", "pipelines.etl")
    assert result.returncode == 0, output(result)
    assert "hello INFO hello from a package" in result.stdout
    with Instance(project.home) as instance:
        assert instance.storage.get_run(run_id_of(result)).job_pointer == "pipelines.etl:etl"


def test_config_files_are_merged_later_wins(project: Project) -> None:
    project.write("cfg.py", """
        from plait import Config, job, op

        class Greeting(Config):
            name: str
            times: int = 1

        @op
        def greet(context, cfg: Greeting) -> str:
            context.log.info("greeting %s x%d", cfg.name, cfg.times)
            return cfg.name * cfg.times

        @job
        def greeter():
            greet()
    """)
    project.write("base.yaml", """
        ops:
          greet:
            config:
              name: ada
              times: 2
    """)
    project.write("override.yaml", """
        ops:
          greet:
            config:
              times: 3
    """)
    result = project.plait("run", "cfg.py", "-c", "base.yaml", "--config", "override.yaml")
    assert result.returncode == 0, output(result)
    assert "greet INFO greeting ada x3" in result.stdout
    with Instance(project.home) as instance:
        record = instance.storage.get_run(run_id_of(result))
    assert record.run_config == {"ops": {"greet": {"config": {"name": "ada", "times": 3}}}}


def test_select_runs_only_the_selected_ops(project: Project) -> None:
    result = project.plait("run", "jobs.py:ok", "--select", "load")
    assert result.returncode == 0, output(result)
    assert "total started" not in result.stdout
    assert step_starts(project, run_id_of(result)) == ["load"]

    both = project.plait("run", "jobs.py:ok", "-s", "load,total")
    assert step_starts(project, run_id_of(both)) == ["load", "total"]


def test_tags_are_recorded_on_the_run(project: Project) -> None:
    result = project.plait("run", "jobs.py:ok", "--tag", "env=test", "--tag", "team=data")
    assert result.returncode == 0, output(result)
    with Instance(project.home) as instance:
        assert instance.storage.get_run(run_id_of(result)).tags == {"env": "test", "team": "data"}


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_executor_option_chooses_the_executor(project: Project, executor: str) -> None:
    result = project.plait("run", "jobs.py:ok", "--executor", executor)
    assert result.returncode == 0, output(result)
    assert f"started on executor {executor}" in result.stdout
    assert "total INFO summing 3" in result.stdout  # live log lines, from a worker too
    with Instance(project.home) as instance:
        start = instance.storage.get_events(run_id_of(result))[0]
    assert start.data["executor"] == executor


def test_executor_from_run_config(project: Project) -> None:
    project.write("mp.yaml", """
        execution:
          multiprocess:
            max_concurrent: 2
    """)
    result = project.plait("run", "jobs.py:ok", "-c", "mp.yaml")
    assert result.returncode == 0, output(result)
    assert "started on executor multiprocess" in result.stdout


def test_dynamic_mapping_progress_counts_mapped_steps(project: Project) -> None:
    project.write("fan.py", """
        from plait import DynamicOut, DynamicOutput, job, op

        @op(out=DynamicOut(int))
        def fan():
            for i in range(3):
                yield DynamicOutput(i, mapping_key=str(i))

        @op
        def double(x: int) -> int:
            return 2 * x

        @op
        def add(xs: list[int]) -> int:
            return sum(xs)

        @job
        def fanned():
            add(fan().map(double).collect())
    """)
    result = project.plait("run", "fan.py")
    assert result.returncode == 0, output(result)
    for key in ("double[0]", "double[1]", "double[2]"):
        assert f"{key} succeeded" in result.stdout


def test_python_dash_m_and_the_console_script_agree(project: Project) -> None:
    script = Path(sys.executable).parent / "plait"
    if not script.exists():
        pytest.skip(f"no console script at {script} (plait not installed in this venv)")
    result = subprocess.run([str(script), "run", "jobs.py:ok"], cwd=project.path,
                            env=project.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, output(result)
    assert "SUCCESS" in result.stdout


def test_a_closed_stdout_does_not_fail_the_run(project: Project) -> None:
    """`plait run ... | head -1`: the reader goes away, the run still finishes and is kept."""
    project.write("piped.py", """
        import os
        import time

        from plait import job, op

        @op
        def wait_for_go(context) -> int:
            deadline = time.monotonic() + 60
            while not os.path.exists("go") and time.monotonic() < deadline:
                time.sleep(0.02)
            context.log.info("after the reader left")
            return 1

        @op
        def then(x: int) -> int:
            return x

        @job
        def piped():
            then(wait_for_go())
    """)
    proc = subprocess.Popen([sys.executable, "-m", "plait.cli", "run", "piped.py"],
                            cwd=project.path, env=project.env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        first = proc.stdout.readline()
        proc.stdout.close()
        (project.path / "go").touch()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    run_id = first.split()[1]
    with Instance(project.home) as instance:
        record = instance.storage.get_run(run_id)
        assert record.status is RunStatus.SUCCESS
        steps = {e.step_key for e in instance.storage.get_events(run_id)
                 if e.event_type is EventType.STEP_SUCCESS}
    assert steps == {"wait_for_go", "then"}


def test_the_summary_names_mapped_steps_with_their_mapping_keys(tmp_path: Path) -> None:
    """Step keys like op[east] are shown as they are, not swallowed as rich markup."""
    (tmp_path / "mapped.py").write_text(
        "from plait import DynamicOut, DynamicOutput, job, op\n"
        "@op(out=DynamicOut(int))\n"
        "def regions():\n"
        "    for name in ('east', 'west'):\n"
        "        yield DynamicOutput(1, mapping_key=name)\n"
        "@op\n"
        "def double(x: int) -> int:\n"
        "    return 2 * x\n"
        "@job\n"
        "def mapped():\n"
        "    regions().map(double)\n"
    )
    proc = subprocess.run([sys.executable, "-m", "plait.cli", "run", "mapped.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PLAIT_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout.split("Steps", 1)[-1]
    assert "double[east]" in summary and "double[west]" in summary
