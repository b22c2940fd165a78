"""Op config and run config: validated as a whole before any step runs, every problem
listed with its path; run config as a dict or a YAML file."""

import pytest
from plait import (
    Config,
    ConfigurableResource,
    EventType,
    Instance,
    RunConfigError,
    job,
    load_run_config,
    op,
)
from pydantic import ValidationError

from tests.core._helpers import run, started


class ExtractConfig(Config):
    rows: int
    table: str = "events"


class LoadConfig(Config):
    batch: int = 100


class Db(ConfigurableResource):
    url: str = "sqlite://"
    timeout: float = 1.0


@op
def extract(cfg: ExtractConfig) -> list[int]:
    return list(range(cfg.rows))


@op
def load(xs: list[int], cfg: LoadConfig, db: Db) -> str:
    return f"{len(xs)} rows in batches of {cfg.batch} to {db.url}"


@op
def plain() -> int:
    return 1


@job(resources={"db": Db()})
def etl():
    load(extract())
    plain()


GOOD = {"ops": {"extract": {"config": {"rows": 3}}}}


def test_op_config_from_a_dict():
    result = run(etl, run_config={"ops": {"extract": {"config": {"rows": 3}}, "load": {"config": {"batch": 5}}}})
    assert result.output_for("load") == "3 rows in batches of 5 to sqlite://"


def test_config_defaults_apply_when_the_op_is_not_mentioned():
    assert run(etl, run_config=GOOD).output_for("load") == "3 rows in batches of 100 to sqlite://"


def test_config_is_a_frozen_pydantic_model():
    cfg = ExtractConfig(rows=1)
    assert cfg.table == "events"
    with pytest.raises(ValidationError):
        cfg.rows = 2  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ExtractConfig(rows=1, nope=2)  # type: ignore[call-arg]


def test_every_problem_is_listed_with_its_path_before_any_step_runs():
    instance = Instance.ephemeral()
    events = []
    bad = {
        "ops": {
            "extract": {"config": {"rows": "many", "tabel": "x"}},
            "load": {"config": {"batch": "big"}},
            "plain": {"config": {"x": 1}},
            "nope": {"config": {}},
        },
        "resources": {"db": {"config": {"timeout": "soon"}}, "cache": {"config": {}}},
        "execution": {"in_process": {"workers": 2}},
        "loggers": {},
    }
    with pytest.raises(RunConfigError) as err:
        etl.execute(run_config=bad, instance=instance, on_event=events.append)
    problems = err.value.errors
    assert problems == sorted(problems)
    expected = [
        "ops.extract.config.rows: Input should be a valid integer",
        "ops.extract.config.tabel: Extra inputs are not permitted",
        "ops.load.config.batch: Input should be a valid integer",
        "ops.plain.config: op 'plain' takes no config",
        "ops.nope: no op 'nope' in job 'etl'; its ops are: extract, load, plain",
        "resources.db.config.timeout: Input should be a valid number",
        "resources.cache: no resource 'cache' in this job; its resources are: db",
        "execution.in_process.workers: Extra inputs are not permitted",
        "loggers: unknown top-level key (expected one of: execution, ops, resources)",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    assert len(problems) == len(expected)
    message = str(err.value)
    assert message.startswith(f"run config is invalid ({len(expected)} problem(s)):\n")
    assert "  ops.extract.config.rows: Input should be a valid integer" in message
    # nothing ran and nothing was recorded
    assert events == []
    assert instance.storage.list_runs() == []


def test_missing_required_config_field_is_reported_even_when_the_op_is_not_mentioned():
    with pytest.raises(RunConfigError) as err:
        run(etl)
    assert err.value.errors == ["ops.extract.config.rows: Field required"]


def test_malformed_sections_and_entries():
    cases = {
        "ops: expected a mapping, got list": {"ops": [1]},
        "ops.extract: expected a mapping with a 'config' key, got int": {"ops": {"extract": 3}},
        "ops.extract: unknown key(s) ['conifg'] (only 'config' is allowed here)": {
            "ops": {"extract": {"conifg": {"rows": 1}, "config": {"rows": 1}}}
        },
        "ops.extract.config: expected a mapping, got str": {"ops": {"extract": {"config": "rows=1"}}},
        "execution: name one executor, got ['a', 'b']": {**GOOD, "execution": {"a": {}, "b": {}}},
        "execution.in_process: expected a mapping of executor config, got int": {
            **GOOD,
            "execution": {"in_process": 3},
        },
    }
    for expected, config in cases.items():
        with pytest.raises(RunConfigError) as err:
            run(etl, run_config=config)
        assert any(p.startswith(expected) for p in err.value.errors), (expected, err.value.errors)


def test_config_for_a_resource_that_is_not_configurable():
    @op
    def use(context) -> int:
        return context.resources.thing

    @job(resources={"thing": 5})
    def j():
        use()

    with pytest.raises(RunConfigError) as err:
        run(j, run_config={"resources": {"thing": {"config": {"a": 1}}}})
    assert err.value.errors == ["resources.thing.config: int is not a ConfigurableResource and takes no config"]


def test_empty_or_null_entries_are_accepted():
    config = {"ops": {"extract": {"config": {"rows": 1}}, "load": None, "plain": {}}, "execution": {"in_process": None}}
    assert run(etl, run_config=config).success


def test_nested_op_config_uses_the_step_key_path():
    from plait import graph

    @graph
    def sub():
        return extract()

    @job
    def j():
        sub()

    assert run(j, run_config={"ops": {"sub.extract": {"config": {"rows": 4}}}}).output_for("sub.extract") == [0, 1, 2, 3]
    with pytest.raises(RunConfigError) as err:
        run(j, run_config={"ops": {"sub.extract": {"config": {"rows": "x"}}}})
    assert err.value.errors[0].startswith("ops.sub.extract.config.rows: Input should be a valid integer")


def test_aliased_ops_have_their_own_config():
    @job
    def j():
        extract.alias("small")()
        extract.alias("big")()

    result = run(j, run_config={"ops": {"small": {"config": {"rows": 1}}, "big": {"config": {"rows": 5}}}})
    assert result.output_for("small") == [0]
    assert result.output_for("big") == [0, 1, 2, 3, 4]


def test_job_default_config_is_deep_merged_under_the_run_config():
    @job(config={"ops": {"extract": {"config": {"rows": 2, "table": "t1"}}}})
    def j():
        extract()

    assert run(j).output_for("extract") == [0, 1]
    result = run(j, run_config={"ops": {"extract": {"config": {"rows": 3}}}})
    assert result.output_for("extract") == [0, 1, 2]
    assert result.events[0].event_type is EventType.RUN_START


def test_resource_config_from_run_config_replaces_fields():
    result = run(etl, run_config={**GOOD, "resources": {"db": {"config": {"url": "pg://x"}}}})
    assert result.output_for("load") == "3 rows in batches of 100 to pg://x"


def test_executor_config_errors_name_the_executor_path():
    with pytest.raises(RunConfigError) as err:
        run(etl, run_config={**GOOD, "execution": {"in_process": {"max_concurrent": 2}}})
    assert err.value.errors == ["execution.in_process.max_concurrent: Extra inputs are not permitted"]


def test_unknown_executor_in_run_config_lists_the_known_ones():
    with pytest.raises(RunConfigError) as err:
        run(etl, run_config={**GOOD, "execution": {"warp_drive": {}}})
    (problem,) = err.value.errors
    assert problem.startswith("execution.warp_drive: unknown executor 'warp_drive'; known executors: ")
    assert "in_process" in problem


def test_execution_section_for_another_executor_than_the_argument_is_ignored():
    # the executor= argument wins over run config, whose section then does not apply
    result = run(etl, run_config={**GOOD, "execution": {"multiprocess": {"max_concurrent": 4}}}, executor="in_process")
    assert result.success
    assert result.events[0].data["executor"] == "in_process"


# ---- YAML -------------------------------------------------------------------------


def test_run_config_from_a_yaml_file_path(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "ops:\n"
        "  extract:\n"
        "    config:\n"
        "      rows: 2\n"
        "resources:\n"
        "  db:\n"
        "    config: {url: 'yaml://db'}\n"
        "execution:\n"
        "  in_process: {}\n"
    )
    result = etl.execute(run_config=str(path), instance=Instance(tmp_path / "home"))
    assert result.output_for("load") == "2 rows in batches of 100 to yaml://db"


def test_yaml_file_problems_are_listed_with_paths(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("ops:\n  extract:\n    config:\n      rows: lots\n")
    with pytest.raises(RunConfigError) as err:
        run(etl, run_config=str(path))
    assert err.value.errors == ["ops.extract.config.rows: Input should be a valid integer, unable to parse string as an integer"]


def test_invalid_yaml_says_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("ops:\n  extract:\n    config: {rows: 1\n  load: [\n")
    with pytest.raises(RunConfigError) as err:
        run(etl, run_config=str(path))
    (problem,) = err.value.errors
    assert problem.startswith(f"{path} at line ")
    assert "invalid YAML" in problem
    line = int(problem.split(" at line ")[1].split(",")[0])
    assert 3 <= line <= 5


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(RunConfigError, match=r"run config must be a mapping, got list"):
        run(etl, run_config=str(path))


def test_empty_yaml_file_is_an_empty_run_config(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")

    @job
    def j():
        plain()

    assert run(j, run_config=str(path)).success


def test_load_run_config_deep_merges_files_later_wins(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("ops:\n  extract:\n    config: {rows: 1, table: a}\n  load:\n    config: {batch: 7}\n")
    top = tmp_path / "top.yaml"
    top.write_text("ops:\n  extract:\n    config: {rows: 4}\n")
    merged = load_run_config(base, top)
    assert merged == {
        "ops": {"extract": {"config": {"rows": 4, "table": "a"}}, "load": {"config": {"batch": 7}}}
    }
    result = run(etl, run_config=merged)
    assert result.output_for("load") == "4 rows in batches of 7 to sqlite://"


def test_run_config_path_object(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("ops: {extract: {config: {rows: 1}}}\n")
    result = run(etl, run_config=path)
    assert result.success
    assert started(result) == ["extract", "load", "plain"]


def test_a_missing_yaml_file_is_a_run_config_error(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(RunConfigError) as err:
        run(etl, run_config=str(path))
    (problem,) = err.value.errors
    assert problem.startswith(f"{path}: cannot read the run config file (No such file or directory)")
    assert "pass a dict" in problem


def test_unknown_op_lists_the_ops_sorted():
    @job
    def j():
        plain.alias("zeta")()
        plain.alias("alpha")()

    with pytest.raises(RunConfigError) as err:
        run(j, run_config={"ops": {"beta": {}}})
    assert err.value.errors == ["ops.beta: no op 'beta' in job 'j'; its ops are: alpha, zeta"]
