"""``plait celery worker``: the CLI plugin's wiring and its config handling. Real worker
starts are covered by the fixtures every Celery test uses (tests/services/celery_workers.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from plait_celery.cli import celery

PLAIT = Path(sys.executable).with_name("plait")


@pytest.mark.skipif(not PLAIT.exists(), reason="the plait script is not installed")
def test_the_plait_cli_loads_the_celery_plugin():
    done = subprocess.run([str(PLAIT), "celery", "worker", "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for option in ("--broker", "--backend", "--queues", "--concurrency", "--loglevel",
                   "--visibility-timeout", "--config"):
        assert option in done.stdout


def test_the_module_form_starts_the_same_command():
    done = subprocess.run([sys.executable, "-m", "plait_celery.worker", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "--broker" in done.stdout


def test_a_config_file_is_validated_like_run_config(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("execution:\n  celery:\n    broker: redis://127.0.0.1:1/0\n"
                      "    backend: rpc://\n")
    result = CliRunner().invoke(celery, ["worker", "--config", str(config)])
    assert result.exit_code == 2
    assert "rpc:// result backend" in result.output


def test_a_config_file_without_the_celery_section_is_refused(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("execution:\n  dask: {}\n")
    result = CliRunner().invoke(celery, ["worker", "--config", str(config)])
    assert result.exit_code == 2
    assert "execution: {celery: {...}}" in result.output
