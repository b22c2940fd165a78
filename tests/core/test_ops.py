"""@op: what a function becomes, how it is called directly, and what OpContext offers."""

from typing import Any

import plait
import pytest
from plait import (
    Config,
    ConfigurableResource,
    DynamicOut,
    DynamicOutput,
    EventType,
    In,
    OpContext,
    OpDefinition,
    Out,
    Output,
    PlaitDefinitionError,
    RetryPolicy,
    job,
    op,
)

from tests.core._helpers import of_type, run


class Rows(Config):
    rows: int = 3


class Db(ConfigurableResource):
    url: str = "mem://"


# ---- what @op records ---------------------------------------------------------------


def test_bare_decorator_makes_an_op_definition_named_after_the_function():
    @op
    def extract(x: int, y: str = "a") -> list[int]:
        """Extracts rows."""
        return [x]

    assert isinstance(extract, OpDefinition)
    assert extract.name == "extract"
    assert extract.description == "Extracts rows."
    assert extract.input_names == ["x", "y"]
    assert extract.ins["x"].type is int
    assert not extract.ins["x"].has_default
    assert extract.ins["y"].default == "a"
    assert list(extract.outs) == ["result"]
    assert extract.outs["result"].type == list[int]


def test_decorator_with_arguments_keeps_name_policy_timeout_tags_and_description():
    policy = RetryPolicy(max_retries=2)

    @op(name="renamed", retry_policy=policy, timeout=5, tags={"team": "data"}, description="d")
    def fn() -> int:
        return 1

    assert fn.name == "renamed"
    assert fn.retry_policy is policy
    assert fn.timeout == 5
    assert fn.tags == {"team": "data"}
    assert fn.description == "d"


def test_context_config_and_resource_parameters_are_not_inputs():
    @op
    def load(context, cfg: Rows, db: Db, upstream: int) -> int:
        return upstream

    assert load.input_names == ["upstream"]
    assert load.context_param == "context"
    assert load.config_param == ("cfg", Rows)
    assert load.required_resource_keys == frozenset({"db"})


def test_required_resource_keys_merge_with_resource_parameters():
    @op(required_resource_keys={"cache"})
    def load(db: Db) -> int:
        return 1

    assert load.required_resource_keys == frozenset({"cache", "db"})


def test_in_declares_type_description_and_default():
    @op(ins={"x": In(int, description="how many", default=7)})
    def fn(x):
        return x

    assert fn.ins["x"].type is int
    assert fn.ins["x"].description == "how many"
    assert fn.ins["x"].default == 7


def test_in_without_type_takes_the_annotation():
    @op(ins={"x": In(description="d")})
    def fn(x: float):
        return x

    assert fn.ins["x"].type is float
    assert fn.ins["x"].description == "d"


def test_out_without_type_takes_the_return_annotation():
    @op(out=Out(description="the total", io_manager_key="store", metadata={"serializer": "json"}))
    def fn() -> int:
        return 1

    out = fn.outs["result"]
    assert out.type is int
    assert out.description == "the total"
    assert out.io_manager_key == "store"
    assert out.metadata == {"serializer": "json"}
    assert out.is_required


def test_multiple_outputs_are_declared_with_a_dict_of_out():
    @op(out={"a": Out(int), "b": Out(str, is_required=False)})
    def fn():
        return 1, "x"

    assert list(fn.outs) == ["a", "b"]
    assert not fn.outs["b"].is_required


def test_generator_op_outputs_are_untyped_unless_declared():
    @op
    def gen():
        yield Output(1)

    assert gen.is_generator
    assert gen.outs["result"].type is Any


def test_dynamic_out_is_dynamic():
    @op(out=DynamicOut(int))
    def fan():
        yield DynamicOutput(1, "a")

    assert fan.outs["result"].is_dynamic
    assert fan.outs["result"].type is int


def test_ins_naming_a_missing_parameter_is_a_definition_error():
    with pytest.raises(PlaitDefinitionError) as err:

        @op(ins={"nope": In(int)})
        def fn(x):
            return x

    msg = str(err.value)
    assert "op 'fn'" in msg and "['nope']" in msg and "its inputs are ['x']" in msg


def test_var_args_are_a_definition_error():
    with pytest.raises(
        PlaitDefinitionError, match=r"op 'fn': \*args/\*\*kwargs .* name each input"
    ):

        @op
        def fn(*xs):
            return xs


def test_non_positive_timeout_is_a_definition_error():
    with pytest.raises(PlaitDefinitionError, match=r"op 'fn': timeout must be > 0 seconds"):

        @op(timeout=0)
        def fn():
            return 1


def test_non_integer_priority_tag_is_a_definition_error():
    with pytest.raises(
        PlaitDefinitionError, match=r"op 'fn': tag 'plait/priority' must be an integer, got 'high'"
    ):

        @op(tags={"plait/priority": "high"})
        def fn():
            return 1


def test_out_dict_with_a_non_out_value_is_a_definition_error():
    with pytest.raises(
        PlaitDefinitionError, match=r"op 'fn': out\['a'\] is 3; each output must be an Out"
    ):

        @op(out={"a": 3})
        def fn():
            return 1


def test_out_of_the_wrong_kind_is_a_definition_error():
    with pytest.raises(
        PlaitDefinitionError, match=r"op 'fn': out= must be an Out, a DynamicOut or a dict"
    ):

        @op(out=int)
        def fn():
            return 1


def test_two_config_parameters_are_a_definition_error():
    with pytest.raises(
        PlaitDefinitionError, match=r"op 'fn': two Config parameters \('a' and 'b'\)"
    ):

        @op
        def fn(a: Rows, b: Rows):
            return 1


def test_unresolvable_annotation_is_a_definition_error_naming_the_op():
    def fn(x: "NotDefinedAnywhere") -> int:  # noqa: F821
        return 1

    with pytest.raises(PlaitDefinitionError, match=r"op 'fn': cannot resolve its type annotations"):
        op(fn)


def test_invalid_mapping_key_is_a_definition_error():
    with pytest.raises(
        PlaitDefinitionError,
        match=r"mapping_key 'a b' is invalid: use letters, digits and underscores",
    ):
        DynamicOutput(1, "a b")


def test_invalid_op_name_is_rejected_when_the_op_is_used_in_a_graph():
    @op(name="bad name")
    def fn() -> int:
        return 1

    with pytest.raises(PlaitDefinitionError, match=r"op name 'bad name' is invalid"):

        @job
        def j():
            fn()


# ---- direct invocation ----------------------------------------------------------------


def test_op_called_outside_a_graph_with_plain_values_runs_the_function():
    @op
    def add(x: int, y: int = 10) -> int:
        return x + y

    assert add(1, 2) == 3
    assert add(1) == 11
    assert add(x=5, y=5) == 10


def test_alias_called_outside_a_graph_also_runs_the_function():
    @op
    def add(x: int, y: int) -> int:
        return x + y

    assert add.alias("other")(2, 3) == 5


def test_direct_invocation_does_not_type_check():
    @op
    def ident(x: int) -> int:
        return x

    # plain invocation is a function call (handy in unit tests); checks run in a run
    assert ident("not an int") == "not an int"


# ---- OpContext ------------------------------------------------------------------------


def test_op_context_exposes_the_run_the_step_and_resources():
    seen: dict[str, Any] = {}

    class Store(ConfigurableResource):
        name: str = "store"

    @op
    def first(context: OpContext, store: Store) -> int:
        seen.update(
            run_id=context.run_id,
            step_key=context.step_key,
            op_name=context.op_name,
            retry_number=context.retry_number,
            mapping_key=context.mapping_key,
            store_attr=context.resources.store,
            store_item=context.resources["store"],
            has_store="store" in context.resources,
            has_other="other" in context.resources,
            param=store,
        )
        context.log.info("hello %s", "world", rows=3)
        return 1

    @job(resources={"store": Store(name="s1")})
    def j():
        first.alias("renamed")()

    result = run(j)
    assert seen["run_id"] == result.run_id
    assert seen["step_key"] == "renamed"
    assert seen["op_name"] == "first"
    assert seen["retry_number"] == 0
    assert seen["mapping_key"] is None
    assert seen["store_attr"].name == "s1"
    assert seen["store_item"] is seen["store_attr"] is seen["param"]
    assert seen["has_store"] and not seen["has_other"]
    (log,) = of_type(result, EventType.LOG, "renamed")
    assert log.message == "hello world"
    assert log.data == {"rows": 3}
    assert log.level == 20


def test_context_resources_unknown_name_lists_the_resources():
    @op
    def first(context) -> int:
        return context.resources.nope

    @job(resources={"db": Db()})
    def j():
        first()

    result = run(j, raise_on_error=False)
    (failure,) = of_type(result, EventType.STEP_FAILURE, "first")
    assert "no resource 'nope'" in failure.message
    assert "'db'" in failure.message


def test_context_log_levels_and_exception_become_log_events():
    @op
    def first(context) -> None:
        context.log.debug("d")
        context.log.warning("w")
        context.log.error("e")
        context.log.critical("c")
        try:
            raise ValueError("boom")
        except ValueError:
            context.log.exception("caught")

    @job
    def j():
        first()

    result = run(j)
    logs = of_type(result, EventType.LOG, "first")
    assert [e.level for e in logs] == [10, 30, 40, 50, 40]
    assert [e.level_name for e in logs][:2] == ["DEBUG", "WARNING"]
    assert "ValueError: boom" in logs[-1].message and logs[-1].message.startswith("caught\n")


def test_add_output_metadata_appears_in_the_step_output_event():
    @op
    def first(context) -> int:
        context.add_output_metadata({"rows": 10})
        context.add_output_metadata({"source": "x"})
        return 1

    @op(out={"a": Out(), "b": Out()})
    def second(context, x: int):
        context.add_output_metadata({"which": "b"}, output_name="b")
        yield Output(x, "a", metadata={"inline": True})
        yield Output(x, "b")

    @job
    def j():
        second(first())

    result = run(j)
    (out,) = of_type(result, EventType.STEP_OUTPUT, "first")
    assert out.data["metadata"] == {"rows": 10, "source": "x"}
    outs = {
        e.data["output_name"]: e.data["metadata"]
        for e in of_type(result, EventType.STEP_OUTPUT, "second")
    }
    assert outs == {"a": {"inline": True}, "b": {"which": "b"}}


def test_add_output_metadata_per_mapping_key():
    @op(out=DynamicOut())
    def fan(context):
        context.add_output_metadata({"all": 1})
        context.add_output_metadata({"only": "b"}, mapping_key="b")
        yield DynamicOutput(1, "a")
        yield DynamicOutput(2, "b")

    @op
    def use(x):
        return x

    @job
    def j():
        fan().map(use)

    result = run(j)
    meta = {
        e.data["mapping_key"]: e.data["metadata"]
        for e in of_type(result, EventType.STEP_OUTPUT, "fan")
    }
    assert meta == {"a": {"all": 1}, "b": {"all": 1, "only": "b"}}


def test_op_context_mapping_key_in_mapped_steps():
    keys: list[tuple[str, str]] = []

    @op(out=DynamicOut())
    def fan():
        yield DynamicOutput(1, "x")
        yield DynamicOutput(2, "y")

    @op
    def use(context, v):
        keys.append((context.step_key, context.mapping_key))
        return v

    @job
    def j():
        fan().map(use)

    run(j)
    assert keys == [("use[x]", "x"), ("use[y]", "y")]


def test_op_config_is_on_the_context_and_the_parameter():
    seen = {}

    @op
    def first(context, cfg: Rows) -> int:
        seen["ctx"] = context.op_config
        seen["param"] = cfg
        return cfg.rows

    @job
    def j():
        first()

    result = run(j, run_config={"ops": {"first": {"config": {"rows": 5}}}})
    assert result.output_for("first") == 5
    assert seen["ctx"] is seen["param"]
    assert seen["param"] == Rows(rows=5)


def test_op_with_no_return_annotation_and_none_result():
    @op
    def side_effect():
        return None

    @op
    def after(x) -> str:
        return f"got {x!r}"

    @job
    def j():
        after(side_effect())

    assert run(j).output_for("after") == "got None"


def test_op_returning_a_generator_object_instead_of_yielding_fails_clearly():
    @op
    def bad():
        return (i for i in range(3))

    @job
    def j():
        bad()

    result = run(j, raise_on_error=False)
    (failure,) = of_type(result, EventType.STEP_FAILURE, "bad")
    assert "returned a generator object; use `yield` in the op itself" in failure.message


def test_public_names_are_exported():
    for name in plait.__all__:
        assert hasattr(plait, name), name


def test_a_parameter_annotated_op_context_receives_the_context_whatever_its_name():
    from plait import Instance, OpContext, job, op

    @op
    def named(ctx: OpContext) -> str:
        return ctx.step_key

    @job
    def uses_ctx():
        named()

    assert named.ins == {}
    assert uses_ctx.execute(instance=Instance.ephemeral()).output_for("named") == "named"
