"""Resources: ConfigurableResource setup/teardown once per run, swapped at execution time,
configured by run config, and a clear error when one is missing."""

import logging
from typing import Any

import pytest
from plait import (
    ConfigurableResource,
    EventType,
    Instance,
    Out,
    ResourceError,
    RetryPolicy,
    job,
    op,
)
from plait_io import IOManager, MemoryIOManager, OutputContext
from pydantic import PrivateAttr

from tests.core._helpers import of_type, run

CALLS: list[tuple[str, str]] = []


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()
    yield
    CALLS.clear()


class Db(ConfigurableResource):
    url: str = "sqlite://"
    _conn: Any = PrivateAttr(None)

    def setup(self) -> None:
        CALLS.append(("setup", self.url))
        self._conn = {"open": True, "url": self.url}

    def teardown(self) -> None:
        CALLS.append(("teardown", self.url))
        self._conn["open"] = False

    def query(self) -> str:
        assert self._conn and self._conn["open"], "used before setup or after teardown"
        return f"rows from {self.url}"


class FakeDb:
    """Not a ConfigurableResource: any object can be a resource."""

    def query(self) -> str:
        return "fake rows"


@op
def read(db: Db) -> str:
    return db.query()


@op
def read_again(context, x: str) -> str:
    return x + " | " + context.resources.db.query()


@job(resources={"db": Db()})
def db_job():
    read_again(read())


def test_setup_once_before_first_use_and_teardown_once_when_the_run_ends():
    result = run(db_job)
    assert result.output_for("read_again") == "rows from sqlite:// | rows from sqlite://"
    assert CALLS == [("setup", "sqlite://"), ("teardown", "sqlite://")]


def test_each_run_sets_up_and_tears_down_its_own_resources():
    run(db_job)
    run(db_job)
    assert CALLS == [("setup", "sqlite://"), ("teardown", "sqlite://")] * 2


def test_teardown_happens_even_when_a_step_fails():
    @op
    def boom(db: Db) -> None:
        db.query()
        raise RuntimeError("step failed")

    @job(resources={"db": Db()})
    def j():
        boom()

    result = run(j, raise_on_error=False)
    assert not result.success
    assert CALLS == [("setup", "sqlite://"), ("teardown", "sqlite://")]

    CALLS.clear()
    with pytest.raises(RuntimeError, match="step failed"):
        run(j)
    assert CALLS == [("setup", "sqlite://"), ("teardown", "sqlite://")]


def test_unused_resources_are_never_set_up():
    @op
    def nothing() -> int:
        return 1

    @job(resources={"db": Db()})
    def j():
        nothing()

    run(j)
    assert CALLS == []


def test_resources_replaced_at_execution_time():
    result = run(db_job, resources={"db": FakeDb()})
    assert result.output_for("read_again") == "fake rows | fake rows"
    assert CALLS == []

    result = run(db_job, resources={"db": Db(url="other://")})
    assert result.output_for("read") == "rows from other://"
    assert CALLS == [("setup", "other://"), ("teardown", "other://")]


def test_resource_config_from_run_config():
    result = run(db_job, run_config={"resources": {"db": {"config": {"url": "pg://prod"}}}})
    assert result.output_for("read") == "rows from pg://prod"
    assert CALLS == [("setup", "pg://prod"), ("teardown", "pg://prod")]
    assert db_job.resources["db"].url == "sqlite://"  # the job's own instance is untouched


def test_run_config_applies_to_a_replacement_resource_too():
    result = run(db_job, resources={"db": Db(url="a://")}, run_config={"resources": {"db": {"config": {"url": "b://"}}}})
    assert result.output_for("read") == "rows from b://"


def test_missing_resource_is_an_error_before_any_step_runs_with_the_fix():
    events = []

    @job
    def j():
        read()

    with pytest.raises(ResourceError) as err:
        j.execute(instance=Instance.ephemeral(), on_event=events.append)
    msg = str(err.value)
    assert "op 'read' needs resource 'db', which the job does not provide" in msg
    assert "resources={...}" in msg and "resources={'db': ...} to execute()" in msg
    assert events == []


def test_missing_required_resource_key():
    @op(required_resource_keys={"cache"})
    def uses_cache(context) -> int:
        return context.resources.cache

    @job
    def j():
        uses_cache()

    with pytest.raises(ResourceError, match=r"op 'uses_cache' needs resource 'cache'"):
        run(j)
    assert run(j, resources={"cache": 42}).output_for("uses_cache") == 42


def test_setup_failure_fails_the_step_naming_the_resource_and_is_retried():
    attempts = []

    class Flaky(ConfigurableResource):
        def setup(self) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise ConnectionError("refused")

    @op(retry_policy=RetryPolicy(max_retries=1))
    def use(flaky: Flaky) -> int:
        return 1

    @job(resources={"flaky": Flaky()})
    def j():
        use()

    result = run(j)
    assert result.success
    (retry,) = of_type(result, EventType.STEP_UP_FOR_RETRY)
    assert "resource 'flaky' (Flaky) failed to set up: ConnectionError: refused" in retry.message
    assert retry.data["error_type"] == "ResourceError"
    assert len(attempts) == 2


def test_teardown_failure_does_not_fail_the_run_but_is_logged(caplog):
    class Sticky(ConfigurableResource):
        def teardown(self) -> None:
            raise OSError("cannot close")

    @op
    def use(sticky: Sticky) -> int:
        return 1

    @job(resources={"sticky": Sticky()})
    def j():
        use()

    with caplog.at_level(logging.WARNING, logger="plait"):
        result = run(j)
    assert result.success
    assert "resource 'sticky' teardown failed: cannot close" in caplog.text


def test_resources_are_torn_down_in_reverse_order_of_setup():
    class Named(ConfigurableResource):
        name: str

        def setup(self) -> None:
            CALLS.append(("setup", self.name))

        def teardown(self) -> None:
            CALLS.append(("teardown", self.name))

    @op
    def use(context) -> int:
        _ = context.resources.first, context.resources.second  # set up in this order
        return 1

    @job(resources={"second": Named(name="second"), "first": Named(name="first")})
    def j():
        use()

    run(j)
    assert CALLS == [("setup", "first"), ("setup", "second"), ("teardown", "second"), ("teardown", "first")]


# ---- IO managers are resources too ---------------------------------------------------


class Recording(IOManager):
    def __init__(self) -> None:
        self.inner = MemoryIOManager()
        self.stored: list[str] = []

    def handle_output(self, context: OutputContext, obj: Any):
        self.stored.append(f"{context.step_key}.{context.output_name}")
        return self.inner.handle_output(context, obj)

    def load_input(self, context):
        return self.inner.load_input(context)


def test_ephemeral_instance_defaults_to_a_memory_io_manager_and_jobs_may_set_their_own():
    @op
    def one() -> int:
        return 1

    @op(out=Out(io_manager_key="special"))
    def two(x: int) -> int:
        return x + 1

    @op
    def three(x: int) -> int:
        return x + 1

    default, special = Recording(), Recording()

    @job(resources={"io_manager": default, "special": special})
    def j():
        three(two(one()))

    result = run(j)
    assert result.output_for("three") == 3
    assert result.output_for("two") == 2
    assert default.stored == ["one.result", "three.result"]
    assert special.stored == ["two.result"]
    handled = {e.step_key: e.data["io_manager_key"] for e in of_type(result, EventType.HANDLED_OUTPUT)}
    assert handled == {"one": "io_manager", "two": "special", "three": "io_manager"}


def test_missing_io_manager_resource_is_an_error():
    @op(out=Out(io_manager_key="lake"))
    def one() -> int:
        return 1

    @job
    def j():
        one()

    with pytest.raises(ResourceError, match=r"an output uses IO manager 'lake', which is not among the resources \(io_manager\)"):
        run(j)


def test_resource_used_as_io_manager_must_be_one():
    @op(out=Out(io_manager_key="db"))
    def one() -> int:
        return 1

    @job(resources={"db": Db()})
    def j():
        one()

    with pytest.raises(ResourceError, match=r"resource 'db' is used as an IO manager but is a Db"):
        run(j)


def test_persistent_instance_stores_outputs_as_files(tmp_path):
    @op
    def one() -> dict:
        return {"a": 1}

    @op
    def two(x: dict) -> int:
        return x["a"] + 1

    @job
    def j():
        two(one())

    instance = Instance(tmp_path / "home")
    try:
        result = j.execute(instance=instance)
        assert result.output_for("two") == 2
        (out,) = of_type(result, EventType.STEP_OUTPUT, "one")
        assert out.data["location"] and result.run_id in out.data["location"]
        assert any((tmp_path / "home" / "storage").rglob("*"))
    finally:
        instance.close()
