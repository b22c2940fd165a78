"""The example ETL job (examples/pandas_etl.py) end to end: in-process on local files,
from the CLI with its base URL from the environment, and on the multiprocess executor
with its outputs on S3 (a moto server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest
from plait import EventType, Instance, RunResult

from examples.pandas_etl import BASE_URL_ENV, REGIONS, pandas_etl

ROOT = Path(__file__).resolve().parents[2]
STEPS = ["extract", "clean", "revenue_by_region", "top_orders"]

try:
    import plait.executors.multiprocess  # noqa: F401

    MULTIPROCESS_MISSING = ""
except ImportError as exc:  # being written in parallel; the S3 run needs it
    MULTIPROCESS_MISSING = f"plait.executors.multiprocess cannot be imported: {exc}"


def check_outputs(result: RunResult) -> None:
    """What the job computes, whatever ran it and wherever it stored its outputs."""
    assert result.success
    orders = result.output_for("clean")
    assert orders["order_id"].is_unique and (orders["amount"] >= 0).all()
    assert list(orders["region"].cat.categories) == list(REGIONS)
    revenue = result.output_for("revenue_by_region")
    assert list(revenue.index) == list(REGIONS)
    assert revenue["orders"].sum() == len(orders)
    assert revenue["revenue"].sum() == pytest.approx(orders["amount"].sum())
    top = result.output_for("top_orders")
    pd.testing.assert_frame_equal(top, orders.nlargest(5, "amount"))
    types = {
        e.step_key: e.data["type"] for e in result.events if e.event_type is EventType.STEP_OUTPUT
    }
    assert types == {
        "extract": "raw_orders",
        "clean": "orders",
        "revenue_by_region": "region_revenue",
        "top_orders": "orders",
    }
    for e in result.events:
        if e.event_type is EventType.STEP_OUTPUT:
            assert e.data["metadata"]["serializer"] == "parquet"
            assert e.data["metadata"]["rows"] > 0


def live_children() -> set[int]:
    """Running child processes, but not multiprocessing's own long-lived helpers (the
    resource tracker, the fork server), which live as long as this process."""
    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
            if (
                proc.status() == psutil.STATUS_ZOMBIE
                or "multiprocessing.resource_tracker" in cmdline
                or "multiprocessing.forkserver" in cmdline
            ):
                continue
        except psutil.Error:
            continue
        found.add(proc.pid)
    return found


def parquet_files(base: Path, run_id: str) -> list[str]:
    return sorted(
        str(p.relative_to(base / run_id)) for p in (base / run_id).rglob("*") if p.is_file()
    )


def test_in_process_on_local_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = {
        "resources": {"io_manager": {"config": {"base_url": str(data)}}},
        "ops": {"extract": {"config": {"rows": 2_000}}},
    }
    result = pandas_etl.execute(instance=Instance(tmp_path / "home"), run_config=config)
    check_outputs(result)
    assert parquet_files(data, result.run_id) == [f"{step}/result" for step in sorted(STEPS)]
    assert len(result.output_for("extract")) == 2_000
    # plain Parquet: readable without plait
    direct = pd.read_parquet(data / result.run_id / "revenue_by_region" / "result")
    pd.testing.assert_frame_equal(direct, result.output_for("revenue_by_region"))


def test_cli_run_takes_the_base_url_from_the_environment(tmp_path: Path) -> None:
    data = tmp_path / "from-env"
    env = {**os.environ, BASE_URL_ENV: str(data), "PLAIT_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "plait.cli", "run", str(ROOT / "examples" / "pandas_etl.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run_dir] = list(data.iterdir())
    assert parquet_files(data, run_dir.name) == [f"{step}/result" for step in sorted(STEPS)]


@pytest.mark.services
@pytest.mark.skipif(bool(MULTIPROCESS_MISSING), reason=MULTIPROCESS_MISSING)
def test_multiprocess_with_outputs_on_s3(tmp_path: Path, s3_url) -> None:
    before = live_children()
    config = {
        "resources": {
            "io_manager": {
                "config": {"base_url": s3_url.url, "storage_options": s3_url.storage_options}
            }
        },
        "execution": {"multiprocess": {"max_concurrent": 2}},
    }
    result = pandas_etl.execute(instance=Instance(tmp_path / "home"), run_config=config)
    check_outputs(result)
    starts = {e.step_key: e for e in result.events if e.event_type is EventType.STEP_START}
    assert sorted(starts) == sorted(STEPS)
    fs = s3_url.filesystem()
    prefix = f"{s3_url.bucket}/plait/{result.run_id}"
    assert sorted(fs.find(prefix)) == [f"{prefix}/{step}/result" for step in sorted(STEPS)]
    with fs.open(f"{prefix}/clean/result", "rb") as f:
        assert f.read(4) == b"PAR1"
    # the worker processes are gone (the moto server, started earlier, stays)
    left = [psutil.Process(pid) for pid in live_children() - before if psutil.pid_exists(pid)]
    _, alive = psutil.wait_procs(left, timeout=10)
    assert not alive, f"processes left running: {[(p.pid, p.cmdline()) for p in alive]}"
