"""Environment variables in YAML run config: ``${NAME}`` and ``${NAME:-default}`` in string
values are replaced when the file is loaded (``load_run_config`` / ``plait run -c``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from plait import Config, Instance, RunConfigError, job, load_run_config, op


class Settings(Config):
    rows: int = 1
    label: str = ""


@op
def configured(config: Settings) -> str:
    return f"{config.label}:{config.rows}"


@job
def settings_job():
    configured()


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PLAIT_T_ADDR", "PLAIT_T_ROWS", "PLAIT_T_EMPTY", "PLAIT_T_A", "PLAIT_T_B"):
        monkeypatch.delenv(name, raising=False)


def test_references_in_string_values_are_replaced_everywhere(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAIT_T_ADDR", "tcp://scheduler:8786")
    monkeypatch.setenv("PLAIT_T_A", "alpha")
    path = write(tmp_path, """
        execution:
          dask: {address: "${PLAIT_T_ADDR}"}
        ops:
          step:
            config:
              label: "${PLAIT_T_A}-${PLAIT_T_A}/x"
              paths: ["s3://${PLAIT_T_A}/in", plain, 3]
              count: 4
              "${PLAIT_T_A}": keys are left alone
    """)
    assert load_run_config(path) == {
        "execution": {"dask": {"address": "tcp://scheduler:8786"}},
        "ops": {"step": {"config": {
            "label": "alpha-alpha/x",
            "paths": ["s3://alpha/in", "plain", 3],
            "count": 4,
            "${PLAIT_T_A}": "keys are left alone",
        }}},
    }


def test_default_applies_when_unset_or_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAIT_T_EMPTY", "")
    monkeypatch.setenv("PLAIT_T_B", "set")
    path = write(tmp_path, """
        unset: ${PLAIT_T_ROWS:-12}
        empty: ${PLAIT_T_EMPTY:-fallback}
        empty_no_default: "<${PLAIT_T_EMPTY}>"
        set: ${PLAIT_T_B:-ignored}
        url_default: ${PLAIT_T_A:-redis://redis:6379/0}
        empty_default: "<${PLAIT_T_A:-}>"
    """)
    assert load_run_config(path) == {
        "unset": "12",
        "empty": "fallback",
        "empty_no_default": "<>",
        "set": "set",
        "url_default": "redis://redis:6379/0",
        "empty_default": "<>",
    }


def test_unset_variable_without_default_names_variable_file_and_key_path(tmp_path):
    path = write(tmp_path, """
        execution:
          celery:
            broker: ${PLAIT_T_ADDR}
        ops:
          step: {config: {paths: [ok, "${PLAIT_T_B}"]}}
    """)
    with pytest.raises(RunConfigError) as info:
        load_run_config(path)
    assert info.value.errors == [
        f"{path}: execution.celery.broker: environment variable PLAIT_T_ADDR is not set; "
        "set it, or give a default in the file: ${PLAIT_T_ADDR:-value}",
        f"{path}: ops.step.config.paths[1]: environment variable PLAIT_T_B is not set; "
        "set it, or give a default in the file: ${PLAIT_T_B:-value}",
    ]


def test_dollar_escape_and_other_dollars_stay_literal(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAIT_T_A", "alpha")
    path = write(tmp_path, """
        escaped: "$${PLAIT_T_A} is ${PLAIT_T_A}"
        shell_style: $PLAIT_T_A costs $5
    """)
    assert load_run_config(path) == {
        "escaped": "${PLAIT_T_A} is alpha",
        "shell_style": "$PLAIT_T_A costs $5",
    }


@pytest.mark.parametrize("reference", ["${PLAIT_T_A", "${}", "${1ABC}", "${PLAIT_T_A-x}",
                                       "${PLAIT_T_A:-${PLAIT_T_B}}", "${A B}"])
def test_malformed_references_are_errors(tmp_path, monkeypatch, reference):
    monkeypatch.setenv("PLAIT_T_A", "alpha")
    path = write(tmp_path, f"value: '{reference}'\n")
    with pytest.raises(RunConfigError) as info:
        load_run_config(path)
    (problem,) = info.value.errors
    assert problem.startswith(f"{path}: value: ")
    assert "is not a valid environment reference" in problem
    assert "${NAME:-default}" in problem


def test_a_value_cannot_change_the_structure_of_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAIT_T_A", "x\nresources: {evil: {config: {}}}")
    path = write(tmp_path, "ops: {step: {config: {label: '${PLAIT_T_A}'}}}\n")
    assert load_run_config(path) == {
        "ops": {"step": {"config": {"label": "x\nresources: {evil: {config: {}}}"}}}
    }


def test_later_files_merge_over_interpolated_earlier_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAIT_T_ROWS", "5")
    base = write(tmp_path, "ops: {configured: {config: {rows: '${PLAIT_T_ROWS}', label: a}}}\n",
                 "base.yaml")
    top = write(tmp_path, "ops: {configured: {config: {label: '${PLAIT_T_B:-b}'}}}\n", "top.yaml")
    assert load_run_config(base, top) == {
        "ops": {"configured": {"config": {"rows": "5", "label": "b"}}}
    }


def test_interpolated_strings_are_validated_by_the_typed_config(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAIT_T_ROWS", "7")
    path = write(tmp_path, """
        ops:
          configured:
            config: {rows: "${PLAIT_T_ROWS}", label: "${PLAIT_T_A:-docker}"}
    """)
    result = settings_job.execute(str(path), instance=Instance.ephemeral())
    assert result.output_for("configured") == "docker:7"

    monkeypatch.setenv("PLAIT_T_ROWS", "many")
    with pytest.raises(RunConfigError, match=r"ops\.configured\.config\.rows: Input should be"):
        settings_job.execute(str(path), instance=Instance.ephemeral())


def test_plait_run_reports_an_unset_variable_as_bad_input(tmp_path):
    (tmp_path / "jobs.py").write_text(textwrap.dedent("""
        from plait import job, op

        @op
        def one() -> int:
            return 1

        @job
        def single():
            one()
    """))
    write(tmp_path, "execution:\n  dask: {address: '${PLAIT_T_ADDR}'}\n", "cluster.yaml")
    env = {"PATH": "/usr/bin:/bin", "PLAIT_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "plait.cli", "run", "jobs.py", "-c", "cluster.yaml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    text = " ".join((proc.stdout + proc.stderr).split())
    assert "cluster.yaml: execution.dask.address: environment variable PLAIT_T_ADDR is not set" in text
    assert "Traceback" not in text
