"""The default IO manager moved to S3 by run config alone (a moto server over HTTP):
outputs of worker processes land in the bucket, results and re-execution load them from
there, secrets in ``storage_options`` stay out of events and errors, and a missing bucket
fails the run before any step.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from plait import (
    EventType,
    Instance,
    RunStatus,
    StorageError,
    job,
    reexecute,
)

from tests.core.flaky_ops import extract, transform
from tests.services.s3 import DUMMY_SECRET, S3Location, s3_storage_options

pytestmark = pytest.mark.services


@job
def pipeline():
    transform(extract())


def run_config(tmp_path: Path, base_url: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    cfg = {"config": {"counter": str(tmp_path / "counter"), "flag": str(tmp_path / "flag")}}
    return {
        "ops": {"extract": cfg, "transform": cfg},
        "resources": {"io_manager": {"config": {"base_url": base_url,
                                                "storage_options": storage_options}}},
        "execution": {"multiprocess": {"max_concurrent": 2}},
    }


def in_bucket(s3: S3Location) -> list[str]:
    fs = s3.filesystem()
    prefix = s3.url.removeprefix("s3://")
    return sorted(p[len(prefix) + 1:] for p in fs.find(prefix))


def test_outputs_of_worker_processes_land_in_the_bucket_and_reexecution_reuses_them(
    tmp_path: Path, s3_url: S3Location
) -> None:

    with Instance(tmp_path / "home") as instance:
        config = run_config(tmp_path, s3_url.url, s3_url.storage_options)
        parent = pipeline.execute(run_config=config, instance=instance, raise_on_error=False)
        assert parent.status is RunStatus.FAILURE
        assert in_bucket(s3_url) == [f"{parent.run_id}/extract/result"]
        assert parent.output_for("extract") == [1, 2, 3]  # loaded back from S3

        (tmp_path / "flag").touch()
        child = reexecute(parent.run_id, from_failure=True, instance=instance)

        assert child.success
        assert Counter((tmp_path / "counter").read_text().split()) == {"extract": 1, "transform": 2}
        assert child.output_for("transform") == 6
        assert child.output_for("extract") == [1, 2, 3]
        assert in_bucket(s3_url) == sorted([f"{parent.run_id}/extract/result",
                                            f"{child.run_id}/transform/result"])
        start = child.events[0]
        assert start.event_type is EventType.RUN_START and start.data["executor"] == "multiprocess"
        outputs = {e.step_key: e.data["location"] for e in child.events
                   if e.event_type is EventType.STEP_OUTPUT}
        assert outputs == {
            "extract": f"{s3_url.url}/{parent.run_id}/extract/result",
            "transform": f"{s3_url.url}/{child.run_id}/transform/result",
        }
        loaded = [e.data["location"] for e in child.events
                  if e.event_type is EventType.LOADED_INPUT]
        assert loaded == [outputs["extract"]]
        for run_id in (parent.run_id, child.run_id):
            for event in instance.storage.get_events(run_id):
                assert DUMMY_SECRET not in f"{event.message} {event.data}"
    assert not (tmp_path / "home" / "storage").exists()


def test_a_missing_bucket_fails_the_run_before_any_step(tmp_path: Path, s3_endpoint: str) -> None:
    url = "s3://plait-no-such-bucket-default-io/outputs"
    with Instance(tmp_path / "home") as instance:
        with pytest.raises(StorageError) as info:
            pipeline.execute(run_config=run_config(tmp_path, url, s3_storage_options(s3_endpoint)),
                             instance=instance)
        assert instance.storage.list_runs() == []
    message = str(info.value)
    assert "no step was run" in message
    assert f"storage at {url} is unavailable: no such bucket" in message
    assert DUMMY_SECRET not in message
    assert not (tmp_path / "counter").exists()
