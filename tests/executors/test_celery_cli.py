"""``plait celery worker``: the CLI plugin's wiring and its config handling. Real worker
starts are covered by the fixtures every Celery test uses (tests/services/celery_workers.py),
and here by one worker that reads broker, backend and queue from a ``-C`` file."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

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


# ---- -C/--config is read like run config ----------------------------------------------------


def _invoke_with(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Any:
    config = tmp_path / "worker.yaml"
    config.write_text(text)
    return CliRunner().invoke(celery, ["worker", "--config", str(config)], env=env)


def test_a_config_file_takes_values_from_the_environment(tmp_path):
    """The backend comes from ${VAR} (and rpc:// is refused, so no worker starts): the
    refusal shows the substituted value reached validation."""
    text = ("execution:\n  celery:\n    broker: ${PLAIT_TEST_BROKER:-redis://127.0.0.1:1/0}\n"
            "    backend: ${PLAIT_TEST_BACKEND}\n")
    result = _invoke_with(tmp_path, text, env={"PLAIT_TEST_BACKEND": "rpc://"})
    assert result.exit_code == 2, result.output
    assert "rpc:// result backend" in result.output


def test_a_config_file_naming_an_unset_variable_is_refused(tmp_path):
    result = _invoke_with(tmp_path, "broker: ${PLAIT_TEST_UNSET_BROKER}\n",
                          env={"PLAIT_TEST_UNSET_BROKER": None})  # type: ignore[dict-item]
    assert result.exit_code == 2
    assert "broker: environment variable PLAIT_TEST_UNSET_BROKER is not set" in result.output
    assert "${PLAIT_TEST_UNSET_BROKER:-value}" in result.output


def test_a_config_file_with_bad_yaml_names_the_line(tmp_path):
    result = _invoke_with(tmp_path, "broker: redis://127.0.0.1:1/0\nqueue: [unclosed\n")
    assert result.exit_code == 2
    assert "worker.yaml at line 3" in result.output and "invalid YAML" in result.output


def test_a_missing_config_file_is_named(tmp_path):
    result = CliRunner().invoke(celery, ["worker", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml" in result.output and "does not exist" in result.output


@pytest.mark.services
def test_a_worker_started_from_a_config_file_with_variables_serves_its_queue(
        redis_server, worker_factory, tmp_path):
    """Broker and backend from ${VAR}, the queue from a ${VAR:-default} default: the worker
    beats on that backend, consuming that queue."""
    import json

    import redis

    queue = f"cfg-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "worker.yaml"
    config.write_text("execution:\n  celery:\n    broker: ${PLAIT_TEST_BROKER}\n"
                      "    backend: ${PLAIT_TEST_BACKEND}\n"
                      f"    queue: ${{PLAIT_TEST_QUEUE:-{queue}}}\n")
    env = {"PLAIT_TEST_BROKER": redis_server.db(0), "PLAIT_TEST_BACKEND": redis_server.db(1)}
    worker = worker_factory(redis_server.db(0), redis_server.db(1), [], config_file=config,
                            env=env)
    beat = redis.Redis.from_url(redis_server.db(1)).get(f"plait:worker:{worker.hostname}")
    assert beat is not None
    assert json.loads(beat)["queues"] == [queue]
