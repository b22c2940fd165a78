"""`plait runs list / show / reexecute` and `plait jobs list`, on runs made by `plait run`."""

from __future__ import annotations

from collections import Counter

import pytest
from plait import EventType, Instance, RunStatus

from tests.cli.conftest import Project, make_project, output, run_id_of


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, list[str]]:
    """A project with three runs, for the tests that only read them: an ok run tagged
    env=a, a failing run, an ok run tagged env=b (oldest first)."""
    project = make_project(tmp_path_factory.mktemp("stored"))
    ids = []
    for args in (["jobs.py:ok", "--tag", "env=a"], ["jobs.py:failing"], ["jobs.py:ok", "--tag", "env=b"]):
        ids.append(run_id_of(project.plait("run", *args)))
    return project, ids


def listed_ids(result) -> list[str]:
    return [line.split()[0] for line in result.stdout.splitlines()
            if line[:1].isalnum() and len(line.split()[0]) == 32]


# -- runs list -------------------------------------------------------------------------


def test_runs_list_newest_first_and_filters(stored: tuple[Project, list[str]]) -> None:
    project, three_runs = stored
    first, failed, last = three_runs
    every = project.plait("runs", "list")
    assert every.returncode == 0, output(every)
    assert listed_ids(every) == [last, failed, first]
    assert "SUCCESS" in every.stdout and "FAILURE" in every.stdout
    assert "env=b" in every.stdout

    assert listed_ids(project.plait("runs", "list", "--job", "failing")) == [failed]
    assert listed_ids(project.plait("runs", "list", "--status", "failure")) == [failed]
    assert listed_ids(project.plait("runs", "list", "--tag", "env=a")) == [first]
    assert listed_ids(project.plait("runs", "list", "--limit", "2")) == [last, failed]


def test_runs_list_with_no_runs(project: Project) -> None:
    result = project.plait("runs", "list")
    assert result.returncode == 0, output(result)
    assert f"No runs in {project.home}" in result.stdout


# -- runs show -------------------------------------------------------------------------


def test_runs_show_a_failed_run_with_its_stack_trace(stored: tuple[Project, list[str]]) -> None:
    project, three_runs = stored
    failed = three_runs[1]
    result = project.plait("runs", "show", failed)
    assert result.returncode == 0, output(result)
    out = result.stdout
    assert failed in out and "failing" in out and "FAILURE" in out and "in_process" in out
    steps = out[out.index("Steps"):out.index("Events")]
    assert "load" in steps and "explode" in steps and "after" in steps and "skipped" in steps
    events = out[out.index("Events"):]
    assert "RUN_START" in events and "RUN_FAILURE" in events
    assert "LOG explode: about to explode" in events
    assert "STEP_FAILURE explode: error: ValueError: boom: the numbers are wrong" in events
    assert "Traceback (most recent call last)" in events
    assert 'raise ValueError("boom: the numbers are wrong")' in events


def test_runs_show_filters_by_step_and_level(stored: tuple[Project, list[str]]) -> None:
    project, three_runs = stored
    failed = three_runs[1]
    by_step = project.plait("runs", "show", failed, "--step", "load")
    assert by_step.returncode == 0, output(by_step)
    events = by_step.stdout[by_step.stdout.index("Events"):]
    assert "STEP_START load" in events and "LOG load: loading 3 numbers" in events
    assert "explode" not in events and "RUN_START" not in events

    warnings = project.plait("runs", "show", failed, "--level", "WARNING")
    events = warnings.stdout[warnings.stdout.index("Events"):]
    assert "LOG explode: about to explode" in events
    assert "STEP_FAILURE explode" in events
    assert "STEP_START" not in events and "loading 3 numbers" not in events

    both = project.plait("runs", "show", failed, "--step", "explode", "--level", "error")
    events = both.stdout[both.stdout.index("Events"):]
    assert "Events (1)" in events and "STEP_FAILURE explode" in events


def test_runs_show_accepts_a_unique_prefix(stored: tuple[Project, list[str]]) -> None:
    project, three_runs = stored
    failed = three_runs[1]
    prefix = next(failed[:n] for n in range(4, 33)
                  if sum(r.startswith(failed[:n]) for r in three_runs) == 1)
    result = project.plait("runs", "show", prefix)
    assert result.returncode == 0, output(result)
    assert failed in result.stdout


# -- runs reexecute ----------------------------------------------------------------------


def test_runs_reexecute_from_failure(project: Project) -> None:
    parent = project.plait("run", "jobs.py:flaky")
    assert parent.returncode == 1, output(parent)
    assert "the flag file is missing" in parent.stdout
    parent_id = run_id_of(parent)

    (project.path / "flag").touch()
    child = project.plait("runs", "reexecute", parent_id, "--from-failure", "--tag", "why=fixed")
    assert child.returncode == 0, output(child)
    child_id = run_id_of(child)
    assert f"re-executing run {parent_id}" in child.stdout
    assert f"extract reused the outputs of run {parent_id}" in child.stdout
    assert "transform succeeded" in child.stdout
    # extract ran once (in the parent) and was not run again
    counts = Counter((project.path / "counter.txt").read_text().split())
    assert counts == Counter({"extract": 1, "transform": 2})
    with Instance(project.home) as instance:
        record = instance.storage.get_run(child_id)
        assert record.parent_run_id == parent_id
        assert record.status is RunStatus.SUCCESS
        assert record.tags["why"] == "fixed"
        loaded = [e for e in instance.storage.get_events(child_id, step_key="transform")
                  if e.event_type is EventType.LOADED_INPUT]
    assert f"/{parent_id}/extract/result" in loaded[0].data["location"]
    shown = project.plait("runs", "show", child_id)
    assert f"parent run  {parent_id}" in " ".join(shown.stdout.split("\n"))


def test_runs_reexecute_one_step(project: Project) -> None:
    (project.path / "flag").touch()
    parent_id = run_id_of(project.plait("run", "jobs.py:flaky"))
    child = project.plait("runs", "reexecute", parent_id[:12], "--step", "transform")
    assert child.returncode == 0, output(child)
    counts = Counter((project.path / "counter.txt").read_text().split())
    assert counts == Counter({"extract": 1, "transform": 2})


def test_runs_reexecute_a_failure_that_fails_again_exits_1(project: Project) -> None:
    parent_id = run_id_of(project.plait("run", "jobs.py:flaky"))
    child = project.plait("runs", "reexecute", parent_id, "--from-failure")
    assert child.returncode == 1, output(child)
    assert "the flag file is missing" in child.stdout


def test_runs_reexecute_of_in_memory_outputs_is_refused(project: Project) -> None:
    project.write("mem.py", """
        from plait import job, op
        from plait_io import MemoryIOManager

        @op
        def one() -> int:
            return 1

        @op
        def fail(x: int) -> int:
            raise RuntimeError("nope")

        @job(resources={"io_manager": MemoryIOManager()})
        def in_memory():
            fail(one())
    """)
    parent_id = run_id_of(project.plait("run", "mem.py"))
    result = project.plait("runs", "reexecute", parent_id, "--from-failure")
    assert result.returncode == 2, output(result)
    flat = " ".join(result.stderr.split())
    assert "kept outputs in memory (one.result)" in flat
    assert "FsspecIOManager" in flat
    assert "Traceback" not in output(result)


def test_from_failure_and_step_together_is_a_usage_error(project: Project) -> None:
    result = project.plait("runs", "reexecute", "x", "--from-failure", "--step", "a")
    assert result.returncode == 2
    assert "not both" in result.stderr


# -- jobs list ----------------------------------------------------------------------------


def test_jobs_list(project: Project) -> None:
    result = project.plait("jobs", "list", "jobs.py")
    assert result.returncode == 0, output(result)
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:] if line.strip()}
    assert sorted(rows) == ["failing", "flaky", "ok"]
    assert "load, total" in rows["ok"] and "Adds three numbers." in rows["ok"]
    assert "Second line" not in result.stdout
    assert "extract, transform" in rows["flaky"]

    one = project.plait("jobs", "list", "jobs.py:ok")
    assert [line.split()[0] for line in one.stdout.splitlines()[2:] if line.strip()] == ["ok"]
