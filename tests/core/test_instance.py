"""``Instance``: where runs, events and outputs are kept, and that they outlive the process.

Real SQLite files and real files under tmp dirs; the home folder is chosen the way a user
chooses it (the working directory, ``PLAIT_HOME``, or an explicit path).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from plait import ConfigurableFsspecIOManager, EventType, Instance, RunStatus, job, op
from plait._storage.sqlite import SqliteRunStorage
from plait.instance import HOME_ENV
from plait_io import FsspecIOManager, MemoryIOManager


@op
def numbers() -> list[int]:
    return [1, 2, 3]


@op
def total(context, xs: list[int]) -> int:
    context.log.info("summing %d numbers", len(xs))
    return sum(xs)


@job(tags={"team": "data"})
def sums():
    total(numbers())


@pytest.fixture
def no_home_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HOME_ENV, raising=False)


# -- where the home is ------------------------------------------------------------------


def test_default_home_is_dot_plait_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_home_env: None
) -> None:
    monkeypatch.chdir(tmp_path)
    with Instance() as instance:
        assert instance.home == tmp_path / ".plait"
        assert instance.storage_dir == tmp_path / ".plait" / "storage"
        assert (tmp_path / ".plait" / "runs.db").is_file()
        assert not instance.is_ephemeral


def test_plait_home_overrides_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "elsewhere"))
    with Instance() as instance:
        assert instance.home == tmp_path / "elsewhere"
    assert (tmp_path / "elsewhere" / "runs.db").is_file()
    assert not (tmp_path / ".plait").exists()


def test_an_explicit_home_wins_over_plait_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "from-env"))
    with Instance(tmp_path / "explicit") as instance:
        assert instance.home == tmp_path / "explicit"
    assert not (tmp_path / "from-env").exists()


def test_a_relative_home_is_made_absolute_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_home_env: None
) -> None:
    monkeypatch.chdir(tmp_path)
    with Instance("rel/home") as instance:
        assert instance.home == tmp_path / "rel" / "home"
        assert instance.home.is_absolute()


def test_execute_without_an_instance_uses_the_default_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_home_env: None
) -> None:
    monkeypatch.chdir(tmp_path)
    result = sums.execute()
    assert result.success
    with Instance(tmp_path / ".plait") as instance:
        assert instance.storage.get_run(result.run_id).status is RunStatus.SUCCESS
    assert (tmp_path / ".plait" / "storage" / result.run_id / "total" / "result").is_file()


# -- outputs ----------------------------------------------------------------------------


def test_default_io_manager_is_fsspec_under_home_storage(tmp_path: Path) -> None:
    with Instance(tmp_path / "home") as instance:
        manager = instance.default_io_manager()
        assert isinstance(manager, ConfigurableFsspecIOManager)  # so run config can replace it
        assert isinstance(manager.manager, FsspecIOManager)
        result = sums.execute(instance=instance)
    storage = tmp_path / "home" / "storage" / result.run_id
    assert sorted(p.relative_to(storage).as_posix() for p in storage.rglob("*") if p.is_file()) == [
        "numbers/result",
        "total/result",
    ]
    stored = [e for e in result.events if e.event_type is EventType.STEP_OUTPUT]
    assert {e.step_key for e in stored} == {"numbers", "total"}
    for event in stored:
        location = event.data["location"]
        assert location.endswith(f"{result.run_id}/{event.step_key}/result")
        assert str(storage) in location
    assert result.output_for("total") == 6


def test_stored_outputs_load_in_a_new_process_view(tmp_path: Path) -> None:
    """Another Instance (a later `plait` command) finds outputs from the events alone."""
    with Instance(tmp_path / "home") as first:
        run_id = sums.execute(instance=first).run_id
    with Instance(tmp_path / "home") as second:
        output = next(
            e for e in second.storage.get_events(run_id, step_key="total")
            if e.event_type is EventType.STEP_OUTPUT
        )
        manager = second.default_io_manager()
        assert manager.load_location(output.data["location"]) == 6


def test_ephemeral_instance_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           no_home_env: None) -> None:
    monkeypatch.chdir(tmp_path)
    instance = Instance.ephemeral()
    assert instance.is_ephemeral and instance.home is None
    assert isinstance(instance.default_io_manager(), MemoryIOManager)
    result = sums.execute(instance=instance)
    assert result.output_for("total") == 6
    assert instance.storage.get_run(result.run_id).status is RunStatus.SUCCESS
    assert list(tmp_path.iterdir()) == []


# -- runs and events outlive the instance -------------------------------------------------


def test_runs_and_events_are_read_back_by_a_new_instance(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Instance(home) as instance:
        result = sums.execute(instance=instance, tags={"env": "test"})
    with Instance(home) as again:
        assert isinstance(again.storage, SqliteRunStorage)
        run = again.storage.get_run(result.run_id)
        assert run is not None
        assert run.job_name == "sums"
        assert run.status is RunStatus.SUCCESS
        assert run.tags == {"team": "data", "env": "test"}
        assert run.start_time is not None and run.end_time >= run.start_time
        assert run.job_pointer == f"{__name__}:sums"
        stored = again.storage.get_events(result.run_id)
    as_recorded = [(e.seq, e.event_type, e.step_key, e.message, e.data) for e in result.events]
    assert [(e.seq, e.event_type, e.step_key, e.message, e.data) for e in stored] == as_recorded
    assert stored[0].event_type is EventType.RUN_START
    assert stored[-1].event_type is EventType.RUN_SUCCESS
    logs = [e for e in stored if e.event_type is EventType.LOG]
    assert [(e.step_key, e.message) for e in logs] == [("total", "summing 3 numbers")]


def test_list_runs_newest_first_and_filtered(tmp_path: Path) -> None:
    with Instance(tmp_path / "home") as instance:
        first = sums.execute(instance=instance, tags={"n": "1"}).run_id
        second = sums.execute(instance=instance, tags={"n": "2"}).run_id
    with Instance(tmp_path / "home") as again:
        assert [r.run_id for r in again.storage.list_runs()] == [second, first]
        assert [r.run_id for r in again.storage.list_runs(tags={"n": "1"})] == [first]
        assert [r.run_id for r in again.storage.list_runs(limit=1)] == [second]
        assert again.storage.list_runs(job_name="other") == []


CONCURRENT_SCRIPT = """
import sys
from pathlib import Path
from plait import Instance, job, op

me, home = sys.argv[1], sys.argv[2]

@op
def start() -> int:
    return 0

@op
def inc(x: int) -> int:
    return x + 1

@job(name="busy_" + me)
def busy():
    value = start()
    for i in range(150):
        value = inc.alias(f"inc_{i}")(value)

# both processes start their runs together: the test says "go" once both are ready
print("ready", flush=True)
sys.stdin.readline()
result = busy.execute(instance=Instance(Path(home) / "plait"))
print(result.run_id, result.output_for("inc_149"), flush=True)
"""


def test_two_processes_run_jobs_on_one_home_at_once_and_lose_no_event(tmp_path: Path) -> None:
    import subprocess
    import sys

    from plait import EventType

    script = tmp_path / "busy_run.py"
    script.write_text(CONCURRENT_SCRIPT)
    procs = [
        subprocess.Popen([sys.executable, str(script), me, str(tmp_path)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for me in ("a", "b")
    ]
    outputs = []
    try:
        for proc in procs:  # a blocking read of each "ready" line (the pytest timeout bounds it)
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err
            outputs.append(out.split())
    finally:
        for proc in procs:
            proc.kill()
    instance = Instance(tmp_path / "plait")
    for run_id, value in outputs:
        assert value == "150"
        events = instance.storage.get_events(run_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[0].event_type is EventType.RUN_START
        assert events[-1].event_type is EventType.RUN_SUCCESS
        successes = [e for e in events if e.event_type is EventType.STEP_SUCCESS]
        assert len(successes) == 151
        assert instance.storage.get_run(run_id).status.value == "SUCCESS"
