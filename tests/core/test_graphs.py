"""@graph / @job composition: nesting, aliases, fan-in, multiple and optional outputs, and
every wiring mistake raised at definition time with the op's name and the fix."""

import pytest
from plait import (
    DynamicOut,
    DynamicOutput,
    EventType,
    GraphDefinition,
    JobDefinition,
    Out,
    Output,
    PlaitDefinitionError,
    graph,
    job,
    op,
)
from plait._defs.compose import FromOutput, NodeSpec
from plait._defs.job import _check_acyclic

from tests.core._helpers import of_type, run, started


@op
def one() -> int:
    return 1


@op
def two() -> int:
    return 2


@op
def inc(x: int) -> int:
    return x + 1


@op
def add(x: int, y: int) -> int:
    return x + y


@op
def total(xs: list[int]) -> int:
    return sum(xs)


# ---- jobs and graphs ----------------------------------------------------------------


def test_job_decorator_and_to_job_make_jobs_with_ordered_step_keys():
    @graph
    def pipeline():
        add(inc(one()), two())

    assert isinstance(pipeline, GraphDefinition)
    j = pipeline.to_job(name="nightly", tags={"team": "data"}, description="d")
    assert isinstance(j, JobDefinition)
    assert j.name == "nightly"
    assert j.tags == {"team": "data"}
    assert list(j.nodes) == ["one", "inc", "two", "add"]
    result = run(j)
    assert result.success
    assert result.output_for("add") == 4

    @job(name="other")
    def pipeline2():
        add(inc(one()), two())

    assert pipeline2.name == "other"
    assert run(pipeline2).output_for("add") == 4


def test_job_name_defaults_to_the_function_name():
    @job
    def my_job():
        one()

    assert my_job.name == "my_job"
    assert repr(my_job) == "<job my_job>"


def test_graph_functions_run_once_at_definition_time_not_per_run():
    calls = []

    @job
    def j():
        calls.append(1)
        one()

    run(j)
    run(j)
    assert calls == [1]


# ---- nesting ------------------------------------------------------------------------


def test_nested_graph_steps_are_prefixed_with_the_graph_name():
    @graph
    def inner(x):
        return inc(inc.alias("inc0")(x))

    @job
    def j():
        total([inner(one()), two()])

    assert list(j.nodes) == ["one", "inner.inc0", "inner.inc", "two", "total"]
    result = run(j)
    assert result.output_for("inner.inc") == 3
    assert result.output_for("total") == 5
    assert started(result) == ["one", "inner.inc0", "inner.inc", "two", "total"]


def test_graphs_nested_twice_have_two_prefixes():
    @graph
    def inner(x):
        return inc(x)

    @graph
    def outer(x):
        return inner(inc(x))

    @job
    def j():
        inc.alias("last")(outer(one()))

    assert list(j.nodes) == ["one", "outer.inc", "outer.inner.inc", "last"]
    result = run(j)
    assert result.output_for("outer.inner.inc") == 3
    assert result.output_for("last") == 4
    assert [e.step_key for e in of_type(result, EventType.STEP_SUCCESS)] == list(j.nodes)


def test_a_graph_can_return_several_outputs_and_be_aliased():
    @graph
    def pair(x):
        return inc(x), inc.alias("inc_b")(x)

    @job
    def j():
        a, b = pair(one())
        c, d = pair.alias("pair2")(two())
        total([a, b, c, d])

    assert "pair2.inc_b" in j.nodes
    assert run(j).output_for("total") == 2 + 2 + 3 + 3


def test_graph_with_no_inputs_nested():
    @graph
    def source():
        return inc(one())

    @job
    def j():
        inc(source())

    assert list(j.nodes) == ["source.one", "source.inc", "inc"]
    assert run(j).output_for("inc") == 3


def test_graph_inputs_by_keyword():
    @graph
    def sub(a, b):
        return add(a, y=b)

    @job
    def j():
        sub(b=two(), a=one())

    assert run(j).output_for("sub.add") == 3


# ---- aliases ------------------------------------------------------------------------


def test_alias_uses_one_op_twice_under_two_step_keys():
    @job
    def j():
        first = inc.alias("first")(one())
        inc.alias("second")(first)

    result = run(j)
    assert result.output_for("first") == 2
    assert result.output_for("second") == 3
    starts = of_type(result, EventType.STEP_START)
    assert [e.step_key for e in starts] == ["one", "first", "second"]


# ---- fan-in ------------------------------------------------------------------------


def test_fan_in_passes_a_list_in_the_order_given():
    @op
    def show(xs: list[int]) -> list[int]:
        return xs

    @job
    def j():
        show([two(), one(), inc(one.alias("one_b")())])

    result = run(j)
    assert result.output_for("show") == [2, 1, 2]
    loaded = [e.data["upstream_step"] for e in of_type(result, EventType.LOADED_INPUT, "show")]
    assert loaded == ["two", "one", "inc"]


def test_fan_in_with_a_tuple_of_outputs():
    @job
    def j():
        total((one(), two()))

    assert run(j).output_for("total") == 3


def test_fan_in_skips_when_any_item_failed():
    @op
    def broken() -> int:
        raise ValueError("no")

    @job
    def j():
        total([one(), broken()])

    result = run(j, raise_on_error=False)
    (skip,) = of_type(result, EventType.STEP_SKIPPED, "total")
    assert skip.data["reason"] == "upstream step 'broken' failed"


# ---- multiple outputs -------------------------------------------------------------


def test_multiple_outputs_from_a_returned_tuple():
    @op(out={"low": Out(int), "high": Out(int)})
    def split(x: int):
        return x - 1, x + 1

    @job
    def j():
        low, high = split(two())
        add(low, high)

    result = run(j)
    assert result.output_for("split", "low") == 1
    assert result.output_for("split", "high") == 3
    assert result.output_for("add") == 4


def test_multiple_outputs_by_yielding_output_per_name_and_attribute_access():
    @op(out={"a": Out(int), "b": Out(str)})
    def split():
        yield Output("x", "b")
        yield Output(1, "a")

    @op
    def show(s: str, n: int) -> str:
        return s * n

    @job
    def j():
        outs = split()
        assert outs.a is outs[0] and outs.b is outs[1]
        with pytest.raises(AttributeError, match=r"no output 'c'; outputs are \['a', 'b'\]"):
            _ = outs.c
        show(outs.b, outs.a)

    assert run(j).output_for("show") == "x"


def test_multiple_outputs_returned_with_the_wrong_arity_fail_the_step():
    @op(out={"a": Out(), "b": Out()})
    def split():
        return 1

    @job
    def j():
        split()

    result = run(j, raise_on_error=False)
    (failure,) = of_type(result, EventType.STEP_FAILURE, "split")
    assert "op 'split' has outputs ['a', 'b']: return a tuple of 2 values" in failure.message


def test_yielding_an_undeclared_output_fails_the_step():
    @op(out={"a": Out(), "b": Out()})
    def split():
        yield Output(1, "c")

    @job
    def j():
        split()

    result = run(j, raise_on_error=False)
    (failure,) = of_type(result, EventType.STEP_FAILURE, "split")
    assert "op 'split' yielded a Output for 'c', but its outputs are ['a', 'b']" in failure.message


def test_yielding_an_output_twice_fails_the_step():
    @op
    def twice():
        yield Output(1)
        yield Output(2)

    @job
    def j():
        twice()

    result = run(j, raise_on_error=False)
    assert "op 'twice' yielded output 'result' twice" in of_type(result, EventType.STEP_FAILURE)[0].message


def test_missing_required_output_fails_the_step_with_the_fix():
    @op(out={"a": Out(), "b": Out()})
    def split():
        yield Output(1, "a")

    @job
    def j():
        split()

    result = run(j, raise_on_error=False)
    msg = of_type(result, EventType.STEP_FAILURE)[0].message
    assert "op 'split' did not produce required output(s) ['b']" in msg
    assert "Out(is_required=False)" in msg


def test_op_with_no_outputs_returns_none_in_a_graph():
    @op(out={})
    def sink(x: int):
        return None

    @job
    def j():
        assert sink(one()) is None

    assert run(j).success


# ---- optional outputs ------------------------------------------------------------


def test_absent_optional_output_skips_downstream_and_the_run_succeeds():
    @op(out={"yes": Out(int, is_required=False), "no": Out(int, is_required=False)})
    def branch(x: int):
        if x > 0:
            yield Output(x, "yes")
        else:
            yield Output(x, "no")

    @job
    def j():
        yes, no = branch(one())
        inc.alias("after_no")(inc.alias("on_no")(no))
        inc.alias("on_yes")(yes)

    result = run(j)
    assert result.success
    assert result.output_for("on_yes") == 2
    skips = {e.step_key: e.data["reason"] for e in of_type(result, EventType.STEP_SKIPPED)}
    assert skips == {
        "on_no": "output 'no' of step 'branch' was not produced",
        "after_no": "upstream step 'on_no' was skipped",
    }
    assert result.step_status() == {
        "one": "succeeded",
        "branch": "succeeded",
        "on_yes": "succeeded",
        "on_no": "skipped",
        "after_no": "skipped",
    }
    assert of_type(result, EventType.STEP_SKIPPED)[0].message.startswith("skipped: ")


def test_optional_single_output_returned_as_none_is_produced():
    # returning a value (even None) produces the output; only not yielding it leaves it out
    @op(out=Out(is_required=False))
    def maybe():
        return None

    @op
    def after(x) -> bool:
        return x is None

    @job
    def j():
        after(maybe())

    assert run(j).output_for("after") is True


# ---- definition errors ------------------------------------------------------------


def test_cycle_is_a_definition_error_naming_the_cycle():
    a = NodeSpec("a", inc, {"x": FromOutput("b", "result")}, order=0)
    b = NodeSpec("b", inc, {"x": FromOutput("a", "result")}, order=1)
    c = NodeSpec("c", one, {}, order=2)
    with pytest.raises(PlaitDefinitionError) as err:
        _check_acyclic("cyclic", {"a": a, "b": b, "c": c})
    msg = str(err.value)
    assert "job 'cyclic' has a dependency cycle" in msg
    assert "a -> b -> a" in msg or "b -> a -> b" in msg
    assert "an op cannot depend on its own output" in msg


def test_self_cycle_is_a_definition_error():
    a = NodeSpec("a", inc, {"x": FromOutput("a", "result")})
    with pytest.raises(PlaitDefinitionError, match=r"dependency cycle: a -> a"):
        _check_acyclic("cyclic", {"a": a})


def test_acyclic_nodes_pass_the_check():
    a = NodeSpec("a", one, {}, order=0)
    b = NodeSpec("b", inc, {"x": FromOutput("a", "result")}, order=1)
    _check_acyclic("fine", {"a": a, "b": b})


def test_unknown_input_is_a_definition_error():
    with pytest.raises(PlaitDefinitionError) as err:

        @job
        def j():
            inc(y=one())

    assert "op 'inc' has no input 'y'; its inputs are ['x']" in str(err.value)


def test_too_many_positional_inputs_is_a_definition_error():
    with pytest.raises(PlaitDefinitionError, match=r"op 'inc' takes 1 input\(s\) \['x'\], but was called with 2"):

        @job
        def j():
            inc(one(), two())


def test_input_given_twice_is_a_definition_error():
    with pytest.raises(PlaitDefinitionError, match=r"op 'inc' got input 'x' twice"):

        @job
        def j():
            inc(one(), x=two())


def test_op_called_outside_a_graph_with_graph_outputs_is_a_definition_error():
    captured = {}

    @job
    def j():
        captured["handle"] = one()

    with pytest.raises(PlaitDefinitionError) as err:
        inc(captured["handle"])
    msg = str(err.value)
    assert "op 'inc' was called with the output of another op outside a graph" in msg
    assert "@graph or @job" in msg
    with pytest.raises(PlaitDefinitionError, match="outside a graph"):
        total([captured["handle"]])


def test_missing_required_input_is_a_definition_error_with_the_fix():
    with pytest.raises(PlaitDefinitionError) as err:

        @job
        def j():
            add(one())

    msg = str(err.value)
    assert "op 'add' is missing required input(s) ['y']" in msg
    assert "In(default=...)" in msg


def test_input_with_a_default_may_be_left_unwired():
    @op
    def scaled(x: int, factor: int = 10) -> int:
        return x * factor

    @job
    def j():
        scaled(two())

    assert run(j).output_for("scaled") == 20


def test_same_op_twice_without_alias_is_a_definition_error_with_the_fix():
    with pytest.raises(PlaitDefinitionError) as err:

        @job
        def dup():
            inc(one())
            inc(two())

    msg = str(err.value)
    assert "graph 'dup' uses the name 'inc' twice" in msg
    assert '.alias("inc_2")' in msg


def test_same_graph_twice_without_alias_is_a_definition_error():
    @graph
    def sub():
        return one()

    with pytest.raises(PlaitDefinitionError, match=r"graph 'j' uses the name 'sub' twice"):

        @job
        def j():
            sub()
            sub()


def test_plain_value_as_an_input_inside_a_graph_is_a_definition_error():
    with pytest.raises(PlaitDefinitionError) as err:

        @job
        def j():
            inc(5)

    msg = str(err.value)
    assert "input 'x' of op 'inc' was given the plain value 5" in msg
    assert "In(default=...)" in msg and "op config" in msg


def test_dynamic_output_passed_directly_is_a_definition_error():
    @op(out=DynamicOut())
    def fan():
        yield DynamicOutput(1, "a")

    with pytest.raises(PlaitDefinitionError) as err:

        @job
        def j():
            inc(fan())

    msg = str(err.value)
    assert "input 'x' of op 'inc' receives the dynamic output fan.result directly" in msg
    assert ".map(op)" in msg and ".collect()" in msg


def test_dynamic_or_mapped_output_in_a_fan_in_list_is_a_definition_error():
    @op(out=DynamicOut())
    def fan():
        yield DynamicOutput(1, "a")

    with pytest.raises(PlaitDefinitionError, match=r"a fan-in list cannot hold a dynamic or mapped output \(inc.result\); use .collect\(\)"):

        @job
        def j():
            total([one(), fan().map(inc)])


def test_map_on_a_plain_output_is_a_definition_error():
    with pytest.raises(PlaitDefinitionError, match=r"output 'result' of 'one' is not dynamic: .map\(\) needs a DynamicOut"):

        @job
        def j():
            one().map(inc)

    with pytest.raises(PlaitDefinitionError, match=r"not dynamic: .collect\(\) needs a DynamicOut"):

        @job
        def j2():
            total(one().collect())


def test_inputs_mapped_over_two_fan_outs_is_a_definition_error():
    @op(out=DynamicOut())
    def fan():
        yield DynamicOutput(1, "a")

    with pytest.raises(PlaitDefinitionError, match=r"op 'add' has inputs mapped over different dynamic outputs \(fan.result, fan2.result\); collect\(\) one of them first"):

        @job
        def j():
            a = fan().map(inc)
            b = fan.alias("fan2")().map(inc.alias("inc2"))
            add(a, b)


def test_nested_fan_out_is_a_definition_error():
    @op(out=DynamicOut())
    def fan():
        yield DynamicOutput(1, "a")

    @op(out=DynamicOut())
    def refan(x):
        yield DynamicOutput(x, "b")

    with pytest.raises(PlaitDefinitionError, match=r"op 'refan' has a DynamicOut and is itself mapped over 'fan': nested fan-out is not supported"):

        @job
        def j():
            fan().map(refan)


def test_graph_called_outside_a_graph_is_a_definition_error_with_the_fix():
    @graph
    def sub():
        return one()

    with pytest.raises(PlaitDefinitionError, match=r"graph 'sub' was called outside a graph; to run it, make a job: sub.to_job\(\).execute\(\)"):
        sub()


def test_graph_without_ops_is_a_definition_error():
    with pytest.raises(PlaitDefinitionError, match=r"graph 'empty' calls no op"):

        @graph
        def empty():
            pass


def test_job_from_a_graph_with_unfed_inputs_is_a_definition_error():
    @graph
    def needs(x):
        return inc(x)

    with pytest.raises(PlaitDefinitionError) as err:
        needs.to_job()
    msg = str(err.value)
    assert "job 'needs': graph 'needs' has inputs that nothing feeds (inc.x)" in msg
    assert "nest it in another graph" in msg


def test_nested_graph_argument_errors():
    @graph
    def sub(a):
        return inc(a)

    with pytest.raises(PlaitDefinitionError, match=r"graph 'sub' has no input\(s\) \['b'\]; its inputs are \['a'\]"):

        @job
        def j():
            sub(b=one())

    with pytest.raises(PlaitDefinitionError, match=r"graph 'sub' takes 1 input\(s\) \['a'\], got 2 positional"):

        @job
        def j2():
            sub(one(), two())


def test_invalid_graph_and_alias_names_are_definition_errors():
    with pytest.raises(PlaitDefinitionError, match=r"graph name 'a.b' is invalid"):

        @graph(name="a.b")
        def g():
            one()

    with pytest.raises(PlaitDefinitionError, match=r"op name 'x\[1\]' is invalid"):

        @job
        def j():
            one.alias("x[1]")()


def test_graph_var_args_are_a_definition_error():
    with pytest.raises(PlaitDefinitionError, match=r"graph 'g': \*args/\*\*kwargs parameters are not supported"):

        @graph
        def g(*xs):
            one()


def test_nested_graph_can_fan_in_its_own_parameter():
    # the graph is composed on its own at definition time, with placeholders for its
    # parameters: a fan-in list holding one must not look like a plain value
    @graph
    def sub(a):
        return total([a, one()])

    @job
    def j():
        sub(two())

    assert run(j).output_for("sub.total") == 3
    with pytest.raises(PlaitDefinitionError, match=r"inputs that nothing feeds \(total.xs\)"):
        sub.to_job()


def test_fan_in_skips_when_an_item_was_not_produced():
    # unlike a collect (which leaves skipped mapped steps out), a fan-in list needs every item
    @op(out=Out(is_required=False))
    def nothing():
        return
        yield

    @job
    def j():
        total([one(), nothing()])

    result = run(j)
    assert result.success
    (skip,) = of_type(result, EventType.STEP_SKIPPED)
    assert skip.step_key == "total"
    assert skip.data["reason"] == "output 'result' of step 'nothing' was not produced"
