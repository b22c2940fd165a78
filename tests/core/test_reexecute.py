"""``plait.reexecute``: a new run of a stored run's job that reuses what already succeeded.

Each op appends its step key to a counter file, so a test proves which steps really ran
in each run; a flag file decides whether the flaky op fails, so a failure can be "fixed"
between the parent run and its re-execution. Jobs live at module level so that runs
record an importable code pointer, the way re-execution finds the job again.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from plait import (
    DynamicOut,
    DynamicOutput,
    EventType,
    Instance,
    PlaitError,
    RunStatus,
    StorageError,
    job,
    op,
    reexecute,
)
from plait._run.reexecute import PARENT_TAG
from plait_io import MemoryIOManager

from tests.core.flaky_ops import Files, count, extract, transform


@op
def publish(cfg: Files, total: int) -> str:
    count(cfg, "publish")
    return f"total={total}"


@job
def pipeline():
    publish(transform(extract()))


@job(resources={"io_manager": MemoryIOManager()})
def in_memory_pipeline():
    publish(transform(extract()))


@op(out=DynamicOut(int))
def fan_out(cfg: Files):
    count(cfg, "fan_out")
    for i in range(3):
        yield DynamicOutput(i, mapping_key=str(i))


@op
def work(cfg: Files, x: int) -> int:
    count(cfg, f"work[{x}]")
    if x == 1 and not Path(cfg.flag).exists():
        raise RuntimeError("item 1 needs the flag")
    return x * 10


@op
def add_up(cfg: Files, xs: list[int]) -> int:
    count(cfg, "add_up")
    return sum(xs)


@job
def mapped():
    add_up(fan_out().map(work).collect())


def files_config(tmp_path: Path, ops: list[str]) -> dict:
    cfg = {"counter": str(tmp_path / "counter.txt"), "flag": str(tmp_path / "flag")}
    return {"ops": {name: {"config": cfg} for name in ops}}


def ran(tmp_path: Path) -> Counter[str]:
    path = tmp_path / "counter.txt"
    return Counter(path.read_text().split()) if path.exists() else Counter()


def fix(tmp_path: Path) -> None:
    (tmp_path / "flag").touch()


@pytest.fixture
def instance(tmp_path: Path):
    with Instance(tmp_path / "home") as inst:
        yield inst


PIPELINE_OPS = ["extract", "transform", "publish"]
MAPPED_OPS = ["fan_out", "work", "add_up"]


def failed_parent(tmp_path: Path, instance: Instance, the_job=pipeline, ops=PIPELINE_OPS):
    result = the_job.execute(files_config(tmp_path, ops), instance=instance, raise_on_error=False)
    assert result.status is RunStatus.FAILURE
    return result


def loaded_inputs(result) -> dict[str, str]:
    return {
        f"{e.step_key}.{e.data['input_name']}": e.data["location"]
        for e in result.events
        if e.event_type is EventType.LOADED_INPUT
    }


# -- from_failure --------------------------------------------------------------------------


def test_from_failure_reruns_only_what_failed_and_reuses_stored_outputs(
    tmp_path: Path, instance: Instance
) -> None:
    parent = failed_parent(tmp_path, instance)
    assert ran(tmp_path) == Counter({"extract": 1, "transform": 1})
    assert parent.step_status() == {"extract": "succeeded", "transform": "failed", "publish": "skipped"}

    fix(tmp_path)
    child = reexecute(parent.run_id, from_failure=True, instance=instance)

    assert child.success
    assert child.run_id != parent.run_id
    # extract was not run again: its count is still 1
    assert ran(tmp_path) == Counter({"extract": 1, "transform": 2, "publish": 1})
    assert child.step_status() == {"extract": "succeeded", "transform": "succeeded", "publish": "succeeded"}
    # transform loaded extract's output from where the parent stored it
    parent_location = next(
        e.data["location"] for e in parent.events
        if e.event_type is EventType.STEP_OUTPUT and e.step_key == "extract"
    )
    assert f"/{parent.run_id}/extract/result" in parent_location
    assert loaded_inputs(child)["transform.xs"] == parent_location
    reused = next(
        e for e in child.events if e.event_type is EventType.STEP_OUTPUT and e.step_key == "extract"
    )
    assert reused.data["producer_run_id"] == parent.run_id
    assert child.output_for("extract") == [1, 2, 3]
    assert child.output_for("publish") == "total=6"
    # nothing for extract was written under the child's own folder
    assert not (tmp_path / "home" / "storage" / child.run_id / "extract").exists()


def test_the_new_run_records_its_parent(tmp_path: Path, instance: Instance) -> None:
    parent = failed_parent(tmp_path, instance)
    fix(tmp_path)
    child = reexecute(parent.run_id, from_failure=True, instance=instance)
    record = instance.storage.get_run(child.run_id)
    assert record.parent_run_id == parent.run_id
    assert record.tags[PARENT_TAG] == parent.run_id
    assert record.status is RunStatus.SUCCESS
    assert record.run_config == instance.storage.get_run(parent.run_id).run_config
    start = child.events[0]
    assert start.event_type is EventType.RUN_START
    assert start.data["parent_run_id"] == parent.run_id
    assert instance.storage.get_run(parent.run_id).status is RunStatus.FAILURE


def test_reexecution_from_a_new_instance_on_the_same_home(tmp_path: Path) -> None:
    """What `plait runs reexecute` does: another process, the same home."""
    with Instance(tmp_path / "home") as first:
        parent = failed_parent(tmp_path, first)
    fix(tmp_path)
    with Instance(tmp_path / "home") as second:
        child = reexecute(parent.run_id, from_failure=True, instance=second)
    assert child.success
    assert ran(tmp_path) == Counter({"extract": 1, "transform": 2, "publish": 1})


def test_a_failed_reexecution_can_be_reexecuted_again(tmp_path: Path, instance: Instance) -> None:
    """A grandchild still reuses extract from the grandparent, where it really is."""
    parent = failed_parent(tmp_path, instance)
    child = reexecute(parent.run_id, from_failure=True, instance=instance, raise_on_error=False)
    assert child.status is RunStatus.FAILURE
    fix(tmp_path)
    grandchild = reexecute(child.run_id, from_failure=True, instance=instance)
    assert grandchild.success
    assert ran(tmp_path) == Counter({"extract": 1, "transform": 3, "publish": 1})
    assert f"/{parent.run_id}/extract/result" in loaded_inputs(grandchild)["transform.xs"]


def test_from_failure_of_a_successful_run_is_refused(tmp_path: Path, instance: Instance) -> None:
    fix(tmp_path)
    parent = pipeline.execute(files_config(tmp_path, PIPELINE_OPS), instance=instance)
    with pytest.raises(PlaitError, match="succeeded: there is no failure"):
        reexecute(parent.run_id, from_failure=True, instance=instance)


# -- steps=[...] ---------------------------------------------------------------------------


def test_steps_reruns_the_named_steps_and_reuses_their_inputs(
    tmp_path: Path, instance: Instance
) -> None:
    fix(tmp_path)
    parent = pipeline.execute(files_config(tmp_path, PIPELINE_OPS), instance=instance)
    assert ran(tmp_path) == Counter({"extract": 1, "transform": 1, "publish": 1})

    child = reexecute(parent.run_id, steps=["transform"], instance=instance)

    assert child.success
    assert ran(tmp_path)["extract"] == 1
    assert ran(tmp_path)["transform"] == 2
    assert loaded_inputs(child)["transform.xs"].endswith(f"/{parent.run_id}/extract/result")
    assert instance.storage.get_run(child.run_id).parent_run_id == parent.run_id
    # publish is downstream of the re-run step: neither run nor reused (it would be stale)
    assert ran(tmp_path)["publish"] == 1
    assert child.step_status() == {"extract": "succeeded", "transform": "succeeded"}


def test_steps_naming_a_step_and_its_downstream_reruns_both(
    tmp_path: Path, instance: Instance
) -> None:
    fix(tmp_path)
    parent = pipeline.execute(files_config(tmp_path, PIPELINE_OPS), instance=instance)
    child = reexecute(parent.run_id, steps=["transform", "publish"], instance=instance)
    assert ran(tmp_path) == Counter({"extract": 1, "transform": 2, "publish": 2})
    assert child.output_for("publish") == "total=6"


def test_steps_with_an_unknown_step_is_refused(tmp_path: Path, instance: Instance) -> None:
    parent = failed_parent(tmp_path, instance)
    with pytest.raises(PlaitError, match="no step") as err:
        reexecute(parent.run_id, steps=["nope"], instance=instance)
    assert "extract" in str(err.value)


def test_from_failure_and_steps_together_are_refused(tmp_path: Path, instance: Instance) -> None:
    parent = failed_parent(tmp_path, instance)
    with pytest.raises(PlaitError, match="not both"):
        reexecute(parent.run_id, from_failure=True, steps=["transform"], instance=instance)


def test_plain_reexecution_runs_everything_again(tmp_path: Path, instance: Instance) -> None:
    parent = failed_parent(tmp_path, instance)
    fix(tmp_path)
    child = reexecute(parent.run_id, instance=instance)
    assert child.success
    assert ran(tmp_path) == Counter({"extract": 2, "transform": 2, "publish": 1})
    assert instance.storage.get_run(child.run_id).parent_run_id == parent.run_id


# -- what cannot be re-executed ----------------------------------------------------------


def test_outputs_kept_in_memory_cannot_be_reused(tmp_path: Path, instance: Instance) -> None:
    parent = failed_parent(tmp_path, instance, in_memory_pipeline)
    fix(tmp_path)
    with pytest.raises(StorageError) as err:
        reexecute(parent.run_id, from_failure=True, instance=instance)
    message = str(err.value)
    assert "in memory" in message  # why
    assert "extract.result" in message  # which output
    assert "FsspecIOManager" in message  # what to configure
    assert ran(tmp_path) == Counter({"extract": 1, "transform": 1})  # nothing ran


def test_an_ephemeral_instance_run_cannot_be_reused(tmp_path: Path) -> None:
    instance = Instance.ephemeral()
    parent = failed_parent(tmp_path, instance)
    with pytest.raises(StorageError, match="in memory"):
        reexecute(parent.run_id, from_failure=True, instance=instance)


def test_unknown_run_id(tmp_path: Path, instance: Instance) -> None:
    with pytest.raises(PlaitError) as err:
        reexecute("no-such-run", from_failure=True, instance=instance)
    message = str(err.value)
    assert "no run 'no-such-run'" in message
    assert str(tmp_path / "home") in message
    assert "plait runs list" in message


# -- dynamic mapping ---------------------------------------------------------------------


def test_a_failed_mapped_step_reruns_alone(tmp_path: Path, instance: Instance) -> None:
    parent = failed_parent(tmp_path, instance, mapped, MAPPED_OPS)
    assert parent.step_status() == {
        "fan_out": "succeeded",
        "work[0]": "succeeded",
        "work[1]": "failed",
        "work[2]": "succeeded",
        "add_up": "skipped",
    }
    fix(tmp_path)
    child = reexecute(parent.run_id, from_failure=True, instance=instance)

    assert child.success
    assert ran(tmp_path) == Counter(
        {"fan_out": 1, "work[0]": 1, "work[1]": 2, "work[2]": 1, "add_up": 1}
    )
    assert child.output_for("add_up") == 30
    assert child.output_for("work") == {"0": 0, "1": 10, "2": 20}
    # add_up gathered work[0] and work[2] from the parent's folder, work[1] from the child's
    gathered = [
        e.data["location"] for e in child.events
        if e.event_type is EventType.LOADED_INPUT and e.step_key == "add_up"
    ]
    producers = [parent.run_id if f"/{parent.run_id}/" in loc else child.run_id for loc in gathered]
    assert producers == [parent.run_id, child.run_id, parent.run_id]
    work1 = next(
        e for e in child.events if e.event_type is EventType.STEP_OUTPUT and e.step_key == "work[1]"
    )
    assert f"/{child.run_id}/" in work1.data["location"]


def test_steps_reruns_one_mapped_step(tmp_path: Path, instance: Instance) -> None:
    fix(tmp_path)
    parent = mapped.execute(files_config(tmp_path, MAPPED_OPS), instance=instance)
    child = reexecute(parent.run_id, steps=["work[2]"], instance=instance)
    assert child.success
    counts = ran(tmp_path)
    assert counts["work[2]"] == 2
    assert counts["work[0]"] == counts["work[1]"] == counts["fan_out"] == counts["add_up"] == 1
    assert child.step_status() == {
        "fan_out": "succeeded", "work[0]": "succeeded", "work[1]": "succeeded",
        "work[2]": "succeeded",
    }
