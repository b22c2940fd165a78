"""The default IO manager (a job that configures no ``io_manager``) is configured from run
config: ``resources.io_manager.config`` moves its outputs with no code change, in-process
and on worker processes alike, and re-execution, results and the CLI find them there.

Jobs live at module level so that runs record an importable code pointer. Each op appends
its step key to a counter file, so a test proves which steps really ran.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from plait import (
    ConfigurableFsspecIOManager,
    EventType,
    ExecutorError,
    Instance,
    RunConfigError,
    RunResult,
    RunStatus,
    StorageError,
    job,
    reexecute,
)
from plait_io import FsspecIOManager, MemoryIOManager

from tests.cli.conftest import make_project, output, run_id_of
from tests.core.flaky_ops import extract, transform

EXECUTORS = ["in_process", "multiprocess"]


@job
def pipeline():
    transform(extract())


@job(resources={"io_manager": FsspecIOManager("memory://plait-test-fixed")})
def fixed_pipeline():
    transform(extract())


@job(resources={"io_manager": MemoryIOManager()})
def memory_pipeline():
    transform(extract())


def files(tmp_path: Path) -> dict[str, Any]:
    cfg = {"config": {"counter": str(tmp_path / "counter"), "flag": str(tmp_path / "flag")}}
    return {"extract": cfg, "transform": cfg}


def io_config(**config: Any) -> dict[str, Any]:
    return {"resources": {"io_manager": {"config": config}}}


def ran(tmp_path: Path) -> Counter[str]:
    return Counter((tmp_path / "counter").read_text().split())


def stored(result: RunResult) -> dict[str, str]:
    """Step key -> location, from the run's STEP_OUTPUT events."""
    return {e.step_key: e.data["location"] for e in result.events
            if e.event_type is EventType.STEP_OUTPUT}


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def instance(tmp_path: Path):
    with Instance(tmp_path / "home") as inst:
        yield inst


# -- outputs go where run config says ------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_run_config_base_url_moves_outputs(tmp_path: Path, instance: Instance,
                                           executor: str) -> None:
    (tmp_path / "flag").touch()
    out = tmp_path / "elsewhere"
    result = pipeline.execute(
        run_config={"ops": files(tmp_path), **io_config(base_url=str(out))},
        executor=executor, instance=instance,
    )
    run_id = result.run_id
    assert files_under(out) == [f"{run_id}/extract/result", f"{run_id}/transform/result"]
    assert not (tmp_path / "home" / "storage" / run_id).exists()
    assert stored(result) == {
        "extract": f"file://{out.as_posix()}/{run_id}/extract/result",
        "transform": f"file://{out.as_posix()}/{run_id}/transform/result",
    }
    assert result.output_for("transform") == 6
    assert result.output_for("extract") == [1, 2, 3]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_serializer_and_base_url_apply_on_workers(tmp_path: Path, instance: Instance,
                                                  executor: str) -> None:
    """Fields given in run config reach the process that stores the output."""
    (tmp_path / "flag").touch()
    out = tmp_path / "json-out"
    result = pipeline.execute(
        run_config={"ops": files(tmp_path), **io_config(base_url=str(out), serializer="json")},
        executor=executor, instance=instance,
    )
    outputs = [e for e in result.events if e.event_type is EventType.STEP_OUTPUT]
    assert {e.data["metadata"]["serializer"] for e in outputs} == {"json"}
    stored_file = out / result.run_id / "extract" / "result"
    assert b"json" in stored_file.read_bytes().split(b"\n", 1)[0]  # the header names it
    assert result.output_for("extract") == [1, 2, 3]


def test_partial_config_keeps_the_instance_storage_folder(tmp_path: Path,
                                                          instance: Instance) -> None:
    (tmp_path / "flag").touch()
    result = pipeline.execute(run_config={"ops": files(tmp_path), **io_config(serializer="pickle")},
                              executor="multiprocess", instance=instance)
    storage = tmp_path / "home" / "storage"
    assert files_under(storage / result.run_id) == ["extract/result", "transform/result"]
    outputs = [e for e in result.events if e.event_type is EventType.STEP_OUTPUT]
    assert {e.data["metadata"]["serializer"] for e in outputs} == {"pickle"}


@pytest.mark.parametrize("executor", EXECUTORS)
def test_reexecution_from_failure_reuses_outputs_at_the_configured_base(
    tmp_path: Path, instance: Instance, executor: str
) -> None:
    out = tmp_path / "elsewhere"
    run_config = {"ops": files(tmp_path), **io_config(base_url=str(out))}
    parent = pipeline.execute(run_config=run_config, executor=executor, instance=instance,
                              raise_on_error=False)
    assert parent.status is RunStatus.FAILURE
    assert files_under(out) == [f"{parent.run_id}/extract/result"]

    (tmp_path / "flag").touch()
    child = reexecute(parent.run_id, from_failure=True, instance=instance, executor=executor)

    assert child.success
    assert ran(tmp_path) == Counter({"extract": 1, "transform": 2})  # extract was reused
    assert child.output_for("extract") == [1, 2, 3]
    assert child.output_for("transform") == 6
    loaded = [e for e in child.events if e.event_type is EventType.LOADED_INPUT]
    assert [e.data["location"] for e in loaded] == [
        f"file://{out.as_posix()}/{parent.run_id}/extract/result"
    ]
    assert files_under(out) == sorted([f"{parent.run_id}/extract/result",
                                       f"{child.run_id}/transform/result"])
    assert not (tmp_path / "home" / "storage").exists()


def test_stored_run_config_keeps_the_absolute_base_url(tmp_path: Path, instance: Instance,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative base_url names the folder under the coordinator's working directory,
    in every worker process too."""
    (tmp_path / "flag").touch()
    monkeypatch.chdir(tmp_path)
    result = pipeline.execute(run_config={"ops": files(tmp_path), **io_config(base_url="rel/out")},
                              executor="multiprocess", instance=instance)
    assert files_under(tmp_path / "rel" / "out") == [
        f"{result.run_id}/extract/result", f"{result.run_id}/transform/result"
    ]


# -- ephemeral instances ------------------------------------------------------------------


def test_ephemeral_instance_with_base_url_runs_on_worker_processes(tmp_path: Path) -> None:
    (tmp_path / "flag").touch()
    out = tmp_path / "eph"
    result = pipeline.execute(run_config={"ops": files(tmp_path), **io_config(base_url=str(out))},
                              executor="multiprocess", instance=Instance.ephemeral())
    assert files_under(out) == [f"{result.run_id}/extract/result",
                                f"{result.run_id}/transform/result"]
    assert result.output_for("transform") == 6


def test_ephemeral_instance_without_config_stays_in_memory(tmp_path: Path) -> None:
    (tmp_path / "flag").touch()
    instance = Instance.ephemeral()
    assert isinstance(instance.default_io_manager(), MemoryIOManager)
    result = pipeline.execute(run_config={"ops": files(tmp_path)}, instance=instance)
    assert set(stored(result).values()) == {None}
    with pytest.raises(ExecutorError, match=r"resources: \{io_manager: \{config: \{base_url"):
        pipeline.execute(run_config={"ops": files(tmp_path)}, executor="multiprocess",
                         instance=instance)


def test_a_job_memory_io_manager_is_not_the_default_run_config_moves(tmp_path: Path,
                                                                     instance: Instance) -> None:
    with pytest.raises(ExecutorError) as info:
        memory_pipeline.execute(run_config={"ops": files(tmp_path)}, executor="multiprocess",
                                instance=instance)
    message = str(info.value)
    assert "['io_manager'] keep outputs in one process's memory. Use an FsspecIOManager" in message
    assert "run config" not in message  # run config cannot move the job's own manager


def test_ephemeral_instance_needs_base_url(tmp_path: Path) -> None:
    instance = Instance.ephemeral()
    with pytest.raises(RunConfigError) as info:
        pipeline.execute(run_config={"ops": files(tmp_path), **io_config(serializer="json")},
                         instance=instance)
    assert info.value.errors == [
        "resources.io_manager.config.base_url: required: an ephemeral instance has no storage "
        "folder, so say where step outputs go: a local path or an fsspec URL such as "
        "s3://bucket/prefix (or run on a persistent Instance(), whose outputs go under its "
        "home folder)"
    ]
    assert instance.storage.list_runs() == []
    assert not (tmp_path / "counter").exists()


# -- problems are reported before any step runs ------------------------------------------------


def test_every_config_problem_is_reported_with_its_path(tmp_path: Path,
                                                        instance: Instance) -> None:
    with pytest.raises(RunConfigError) as info:
        pipeline.execute(
            run_config={"ops": files(tmp_path),
                        **io_config(base_url=str(tmp_path / "o"), serializer="yaml", bucket="b",
                                    storage_options="anon")},
            instance=instance,
        )
    problems = info.value.errors
    assert len(problems) == 3, problems
    assert "resources.io_manager.config.bucket: Extra inputs are not permitted" in problems
    assert "resources.io_manager.config.storage_options: Input should be a valid dictionary" \
        in problems
    (serializer,) = [p for p in problems if p.startswith("resources.io_manager.config.serializer:")]
    assert "unknown serializer 'yaml'" in serializer and "cloudpickle" in serializer
    assert instance.storage.list_runs() == []
    assert not (tmp_path / "counter").exists()


def test_an_unusable_base_fails_the_run_before_any_step(tmp_path: Path,
                                                        instance: Instance) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError) as info:
        pipeline.execute(run_config={"ops": files(tmp_path), **io_config(base_url=str(blocker))},
                         executor="multiprocess", instance=instance)
    message = str(info.value)
    assert "no step was run" in message
    assert f"file://{blocker.as_posix()}" in message
    assert instance.storage.list_runs() == []
    assert not (tmp_path / "counter").exists()


def test_a_job_io_manager_that_is_not_configurable_says_so(tmp_path: Path,
                                                           instance: Instance) -> None:
    with pytest.raises(RunConfigError) as info:
        fixed_pipeline.execute(run_config={"ops": files(tmp_path), **io_config(base_url="x")},
                               instance=instance)
    assert info.value.errors == [
        "resources.io_manager.config: FsspecIOManager is not a ConfigurableResource and takes "
        "no config; to choose storage in run config, give the job "
        "plait.ConfigurableFsspecIOManager(base_url=...) instead, or no io_manager at all "
        "(the default one takes this config)"
    ]


# -- the resource itself ------------------------------------------------------------------


def test_configurable_manager_never_shows_secrets(tmp_path: Path) -> None:
    manager = ConfigurableFsspecIOManager(
        base_url=str(tmp_path), storage_options={"key": "AKIA-ID", "secret": "s3cr3t"},
    )
    for text in (repr(manager), str(manager), manager.describe()):
        assert "s3cr3t" not in text and "AKIA-ID" not in text
    assert manager.base_url == f"file://{tmp_path.as_posix()}"  # absolute, as workers need


def test_default_io_manager_applies_config(tmp_path: Path, instance: Instance) -> None:
    default = instance.default_io_manager()
    assert isinstance(default, ConfigurableFsspecIOManager)
    assert default.base_url == f"file://{(tmp_path / 'home' / 'storage').as_posix()}"
    moved = instance.default_io_manager({"base_url": "memory://moved", "serializer": "json"})
    assert isinstance(moved, ConfigurableFsspecIOManager)
    assert (moved.base_url, moved.serializer) == ("memory://moved", "json")


# -- the CLI ------------------------------------------------------------------------------


# Nothing but ops and the job in this file: the other classes and functions of a file
# loaded by path do not reach multiprocess workers yet (cloudpickle pickles them by
# reference to a module that only the CLI process has imported).
FLAKY_FILE = """
from pathlib import Path

from plait import job, op


@op
def extract() -> list[int]:
    with open("counter.txt", "a") as f:
        f.write("extract\\n")
    return [1, 2, 3]


@op
def transform(xs: list[int]) -> int:
    with open("counter.txt", "a") as f:
        f.write("transform\\n")
    if not Path("flag").exists():
        raise RuntimeError("the flag file is missing")
    return sum(xs)


@job
def flaky():
    transform(extract())
"""


def test_cli_yaml_with_environment_base_url_and_reexecution(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    project.write("flaky.py", FLAKY_FILE)
    project.write("cfg.yaml", """
        resources:
          io_manager:
            config:
              base_url: ${OUT_DIR}/outputs
        execution:
          multiprocess: {max_concurrent: 2}
    """)
    out = tmp_path / "shared" / "outputs"
    first = project.plait("run", "flaky.py", "-c", "cfg.yaml",
                          env={"OUT_DIR": str(tmp_path / "shared")})
    assert first.returncode == 1, output(first)
    assert "started on executor multiprocess" in first.stdout
    parent = run_id_of(first)
    assert files_under(out) == [f"{parent}/extract/result"], output(first)

    (tmp_path / "flag").touch()
    # the stored run config holds the resolved URL: OUT_DIR is not needed any more
    again = project.plait("runs", "reexecute", parent, "--from-failure")
    assert again.returncode == 0, output(again)
    child = run_id_of(again)
    assert (tmp_path / "counter.txt").read_text().split() == ["extract", "transform", "transform"]
    assert files_under(out) == sorted([f"{parent}/extract/result", f"{child}/transform/result"])
    assert not (project.home / "storage").exists()
    with Instance(project.home) as instance:
        assert instance.storage.get_run(child).status is RunStatus.SUCCESS
        events = instance.storage.get_events(child)
    loaded = [e.data["location"] for e in events if e.event_type is EventType.LOADED_INPUT]
    assert loaded == [f"file://{out.as_posix()}/{parent}/extract/result"]
    # and a later process loads the values from where the events say
    locations = {e.step_key: e.data["location"] for e in events
                 if e.event_type is EventType.STEP_OUTPUT}
    manager = ConfigurableFsspecIOManager(base_url=str(out))
    assert manager.load_location(locations["transform"]) == 6
    assert manager.load_location(locations["extract"]) == [1, 2, 3]


def test_cli_reports_a_missing_environment_variable(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    project.write("cfg.yaml", """
        resources:
          io_manager: {config: {base_url: "${OUT_DIR}/outputs"}}
    """)
    result = project.plait("run", "jobs.py:ok", "-c", "cfg.yaml")
    assert result.returncode != 0
    assert "resources.io_manager.config.base_url: environment variable OUT_DIR is not set" \
        in output(result)
