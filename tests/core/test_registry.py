"""Executors by name: the lazy registry, the `plait.executors` entry-point group, install
hints, the precedence of executor choices, and that `import plait` imports no engine."""

import subprocess
import sys
from typing import ClassVar

import pytest
from plait import (
    Executor,
    ExecutorError,
    ExecutorNotInstalledError,
    RunConfigError,
    job,
    op,
)
from plait.executors import registry
from plait.executors.in_process import InProcessExecutor
from pydantic import BaseModel, ConfigDict

from tests.core._helpers import run


class MarkedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = "default"


class MarkedExecutor(InProcessExecutor):
    """An in-process executor under another name, registered through entry points."""

    name: ClassVar[str] = "marked"
    config_model: ClassVar[type[BaseModel]] = MarkedConfig


class OtherExecutor(InProcessExecutor):
    name: ClassVar[str] = "other"


@pytest.fixture
def plugins(monkeypatch):
    """Pretend two third-party packages registered executors in `plait.executors`."""
    loaded = dict(registry._from_entry_points())
    loaded["marked"] = f"{__name__}:MarkedExecutor"
    loaded["other"] = f"{__name__}:OtherExecutor"
    monkeypatch.setattr(registry, "_entry_points_loaded", loaded)
    return loaded


@op
def one() -> int:
    return 1


@job
def j():
    one()


def executor_of(result) -> str:
    return result.events[0].data["executor"]


# ---- lookup -------------------------------------------------------------------------


def test_in_process_is_found_by_name():
    assert registry.get_executor_class("in_process") is InProcessExecutor


def test_known_names_are_listed_read_only():
    names = registry.executor_names()
    assert {"in_process", "multiprocess", "dask", "celery"} <= set(names)
    assert names == sorted(names)
    assert registry.known_executors["dask"] == ("plait_dask.executor:DaskExecutor", "plait-dask")
    with pytest.raises(TypeError):
        registry.known_executors["x"] = ("a:b", "c")  # type: ignore[index]


def test_core_registers_its_executors_as_entry_points():
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="plait.executors")}
    assert {"in_process", "multiprocess"} <= names


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ExecutorError) as err:
        registry.get_executor_class("warp")
    msg = str(err.value)
    assert "unknown executor 'warp'; known executors: " in msg
    for name in ("celery", "dask", "in_process", "multiprocess"):
        assert name in msg
    assert "'plait.executors' entry-point group" in msg
    assert not isinstance(err.value, ExecutorNotInstalledError)


def test_a_known_executor_whose_package_is_missing_says_what_to_install(monkeypatch):
    # as if plait-dask were not installed: no entry point, and its module is missing
    monkeypatch.setattr(registry, "_entry_points_loaded", {})
    monkeypatch.setitem(registry._known, "dask", ("plait_dask_not_installed.executor:DaskExecutor", "plait-dask"))
    with pytest.raises(ExecutorNotInstalledError) as err:
        registry.get_executor_class("dask")
    msg = str(err.value)
    assert "executor 'dask' needs the package 'plait-dask', which is not installed" in msg
    assert "pip install plait-dask" in msg
    assert isinstance(err.value, ExecutorError)


def test_a_missing_dependency_of_an_installed_plugin_is_explained(monkeypatch):
    monkeypatch.setattr(registry, "_entry_points_loaded", {})
    # the module imports, but something it needs does not: not the plugin's own package
    monkeypatch.setitem(registry._known, "broken", ("tests.core._missing_dependency:Executor", "plait-broken"))
    with pytest.raises(ExecutorNotInstalledError) as err:
        registry.get_executor_class("broken")
    msg = str(err.value)
    assert "executor 'broken' could not import 'a_dependency_that_is_not_installed'" in msg
    assert "pip install plait-broken" in msg


def test_a_missing_executor_named_in_run_config_is_a_run_config_error(monkeypatch):
    monkeypatch.setattr(registry, "_entry_points_loaded", {})
    monkeypatch.setitem(registry._known, "dask", ("plait_dask_not_installed.executor:DaskExecutor", "plait-dask"))
    with pytest.raises(RunConfigError) as err:
        run(j, run_config={"execution": {"dask": {}}})
    (problem,) = err.value.errors
    assert problem.startswith("execution.dask: executor 'dask' needs the package 'plait-dask'")
    assert "pip install plait-dask" in problem
    with pytest.raises(ExecutorNotInstalledError, match="pip install plait-dask"):
        run(j, executor="dask")


def test_an_unknown_executor_argument_is_an_executor_error():
    with pytest.raises(ExecutorError, match=r"unknown executor 'warp'"):
        run(j, executor="warp")


def test_entry_point_executors_are_found_lazily(plugins):
    assert registry.get_executor_class("marked") is MarkedExecutor
    assert "marked" in registry.executor_names()


# ---- precedence -----------------------------------------------------------------------


def test_default_is_in_process():
    assert executor_of(run(j)) == "in_process"


def test_job_default_executor_by_name_or_instance(plugins):
    @job(executor="marked")
    def by_name():
        one()

    assert executor_of(run(by_name)) == "marked"

    @job(executor=OtherExecutor())
    def by_instance():
        one()

    assert executor_of(run(by_instance)) == "other"


def test_run_config_execution_wins_over_the_job_default(plugins):
    @job(executor="other")
    def k():
        one()

    result = run(k, run_config={"execution": {"marked": {"label": "from config"}}})
    assert executor_of(result) == "marked"


def test_executor_argument_wins_over_run_config_and_job_default(plugins):
    @job(executor="other")
    def k():
        one()

    assert executor_of(run(k, executor="in_process", run_config={"execution": {"marked": {}}})) == "in_process"
    assert executor_of(run(k, executor=MarkedExecutor())) == "marked"


def test_executor_config_from_run_config_reaches_the_executor(plugins, monkeypatch):
    seen = []
    original = MarkedExecutor.__init__

    def spy(self, config=None, **kwargs):
        original(self, config, **kwargs)
        seen.append(self.config.label)

    monkeypatch.setattr(MarkedExecutor, "__init__", spy)
    run(j, run_config={"execution": {"marked": {"label": "x"}}})
    run(j, executor="marked", run_config={"execution": {"marked": {"label": "y"}}})
    run(j, executor="marked")
    assert seen == ["x", "y", "default"]


def test_executor_config_is_validated_for_entry_point_executors(plugins):
    with pytest.raises(RunConfigError) as err:
        run(j, run_config={"execution": {"marked": {"lable": "typo"}}})
    assert err.value.errors == ["execution.marked.lable: Extra inputs are not permitted"]


def test_executor_base_validates_its_config():
    assert MarkedExecutor(label="kw").config.label == "kw"
    assert MarkedExecutor({"label": "dict"}).config.label == "dict"
    with pytest.raises(Exception, match="Extra inputs are not permitted"):
        MarkedExecutor({"nope": 1})
    assert isinstance(MarkedExecutor(), Executor)
    assert MarkedExecutor().max_concurrent == 1


# ---- import hygiene --------------------------------------------------------------------


def test_import_plait_imports_no_engine_or_storage_library():
    code = (
        "import sys, plait, plait.executors.registry\n"
        "heavy = ('dask', 'distributed', 'celery', 's3fs', 'fsspec', 'kombu', 'redis', 'botocore')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_running_a_job_in_process_on_an_ephemeral_instance_imports_no_engine():
    code = (
        "import sys\n"
        "from plait import op, job, Instance\n"
        "@op\n"
        "def one() -> int:\n"
        "    return 1\n"
        "@job\n"
        "def j():\n"
        "    one()\n"
        "assert j.execute(instance=Instance.ephemeral()).success\n"
        "heavy = ('dask', 'distributed', 'celery', 's3fs', 'fsspec')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_third_party_entry_point_that_fails_to_import_is_explained(plugins):
    plugins["ghost"] = "plait_ghost_executor_xyz:GhostExecutor"
    with pytest.raises(ExecutorNotInstalledError) as err:
        registry.get_executor_class("ghost")
    msg = str(err.value)
    assert "executor 'ghost' is registered in the 'plait.executors' entry-point group" in msg
    assert "'plait_ghost_executor_xyz:GhostExecutor'" in msg
    assert "No module named 'plait_ghost_executor_xyz'" in msg
    assert "pip install ghost" not in msg  # the executor name is not a package name
