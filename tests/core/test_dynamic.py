"""Dynamic fan-out / fan-in: DynamicOut + DynamicOutput, .map and .collect."""

import pytest
from plait import (
    DynamicOut,
    DynamicOutput,
    EventType,
    Out,
    Output,
    PlaitDefinitionError,
    PlaitError,
    graph,
    job,
    op,
)

from tests.core._helpers import of_type, run, started


@op(out=DynamicOut(int))
def fan():
    for key, value in (("b", 2), ("a", 1), ("c", 3)):
        yield DynamicOutput(value, key)


@op
def double(x: int) -> int:
    return x * 2


@op
def inc(x: int) -> int:
    return x + 1


@op
def total(xs: list[int]) -> int:
    return sum(xs)


@op
def as_list(xs: list[int]) -> list[int]:
    return xs


def test_map_creates_one_step_per_mapping_key_and_collect_gathers_them():
    @job
    def j():
        total(fan().map(double).collect())

    result = run(j)
    assert result.success
    assert started(result) == ["fan", "double[b]", "double[a]", "double[c]", "total"]
    assert result.output_for("total") == 12
    assert result.output_for("double") == {"b": 4, "a": 2, "c": 6}
    assert result.output_for("double[a]") == 2
    assert result.output_for("fan") == {"b": 2, "a": 1, "c": 3}


def test_collect_keeps_the_order_the_items_were_yielded():
    @job
    def j():
        as_list(fan().map(double).collect())

    assert run(j).output_for("as_list") == [4, 2, 6]


def test_collect_directly_from_the_dynamic_output():
    @job
    def j():
        as_list(fan().collect())

    assert run(j).output_for("as_list") == [2, 1, 3]


def test_chained_maps_and_a_mapped_function_calling_several_ops():
    @job
    def j():
        items = fan()
        chained = items.map(double).map(inc)
        via_fn = items.map(lambda x: inc.alias("inc2")(double.alias("double2")(x)))
        total(chained.collect())
        total.alias("total2")(via_fn.collect())

    result = run(j)
    assert result.output_for("total") == 4 + 2 + 6 + 3
    assert result.output_for("total2") == 4 + 2 + 6 + 3
    assert result.output_for("inc") == {"b": 5, "a": 3, "c": 7}
    assert "inc2[c]" in started(result)


def test_mapping_a_nested_graph_prefixes_and_suffixes_the_step_keys():
    @graph
    def per_item(x):
        return inc(double(x))

    @job
    def j():
        total(fan().map(per_item).collect())

    result = run(j)
    assert "per_item.double[a]" in started(result)
    assert result.output_for("per_item.inc") == {"b": 5, "a": 3, "c": 7}
    assert result.output_for("total") == 15


def test_mapped_op_can_also_take_a_non_mapped_input():
    @op
    def ten() -> int:
        return 10

    @op
    def add(x: int, y: int) -> int:
        return x + y

    @job
    def j():
        t = ten()
        total(fan().map(lambda x: add(x, t)).collect())

    assert run(j).output_for("total") == 36


def test_dynamic_op_returning_a_list_of_dynamic_outputs():
    @op(out=DynamicOut())
    def listed():
        return [DynamicOutput(1, "x"), DynamicOutput(2, "y")]

    @job
    def j():
        total(listed().map(double).collect())

    assert run(j).output_for("total") == 6


def test_dynamic_op_returning_something_else_fails_clearly():
    @op(out=DynamicOut())
    def listed():
        return 5

    @job
    def j():
        listed().map(double)

    result = run(j, raise_on_error=False)
    (failure,) = of_type(result, EventType.STEP_FAILURE)
    assert "op 'listed' has a DynamicOut: yield DynamicOutput items or return a list of them" in failure.message


def test_duplicate_mapping_key_fails_the_producer():
    @op(out=DynamicOut())
    def dup():
        yield DynamicOutput(1, "x")
        yield DynamicOutput(2, "x")

    @job
    def j():
        dup().map(double)

    result = run(j, raise_on_error=False)
    (failure,) = of_type(result, EventType.STEP_FAILURE, "dup")
    assert "op 'dup' yielded mapping key 'x' twice for output 'result'; mapping keys must be unique" in failure.message
    assert of_type(result, EventType.STEP_SKIPPED) == []  # mapped steps were never created


def test_plain_output_yielded_for_a_dynamic_out_fails_clearly():
    @op(out=DynamicOut())
    def wrong():
        yield Output(1)

    @job
    def j():
        wrong().map(double)

    result = run(j, raise_on_error=False)
    msg = of_type(result, EventType.STEP_FAILURE)[0].message
    assert "op 'wrong' yielded a Output for 'result', but its outputs are []" in msg


def test_empty_optional_fan_out_skips_the_collector_and_the_run_succeeds():
    @op(out=DynamicOut(is_required=False))
    def nothing():
        return
        yield  # a generator that yields no item

    @job
    def j():
        inc(total(nothing().map(double).collect()))

    result = run(j)
    assert result.success
    assert started(result) == ["nothing"]
    skips = {e.step_key: e.data["reason"] for e in of_type(result, EventType.STEP_SKIPPED)}
    assert skips == {
        "total": "dynamic output 'result' of step 'nothing' produced no items",
        "inc": "upstream step 'total' was skipped",
    }
    with pytest.raises(PlaitError, match=r"has no output 'result' of 'double'"):
        result.output_for("double")


def test_empty_required_fan_out_fails_like_a_missing_output():
    # as in Dagster: a required DynamicOut must yield at least one item
    @op(out=DynamicOut())
    def nothing():
        return []

    @job
    def j():
        total(nothing().map(double).collect())

    result = run(j, raise_on_error=False)
    assert not result.success
    (failure,) = of_type(result, EventType.STEP_FAILURE)
    assert "did not produce required output(s) ['result']" in failure.message
    (skip,) = of_type(result, EventType.STEP_SKIPPED)
    assert skip.step_key == "total"
    assert skip.data["reason"] == "upstream step 'nothing' failed"


def test_a_failed_mapped_step_skips_the_collector():
    @op
    def picky(x: int) -> int:
        if x == 1:
            raise ValueError("one is bad")
        return x

    @job
    def j():
        total(fan().map(picky).collect())

    result = run(j, raise_on_error=False)
    assert not result.success
    assert result.step_status()["picky[b]"] == "succeeded"
    assert result.step_status()["picky[a]"] == "failed"
    (skip,) = of_type(result, EventType.STEP_SKIPPED)
    assert skip.step_key == "total"
    assert skip.data["reason"] == "upstream step 'picky[a]' failed"


def test_a_skipped_mapped_step_is_left_out_of_the_collection():
    @op(out=Out(is_required=False))
    def keep_odd(x: int):
        if x % 2:
            yield Output(x)

    @job
    def j():
        as_list(fan().map(keep_odd).map(double).collect())

    result = run(j)
    assert result.success
    assert result.output_for("as_list") == [2, 6]
    skipped = sorted(e.step_key for e in of_type(result, EventType.STEP_SKIPPED))
    assert skipped == ["double[b]"]


def test_failure_in_the_producer_skips_nothing_that_was_never_created():
    @op(out=DynamicOut())
    def broken():
        yield DynamicOutput(1, "a")
        raise RuntimeError("midway")

    @job
    def j():
        total(broken().map(double).collect())

    result = run(j, raise_on_error=False)
    assert [e.step_key for e in of_type(result, EventType.STEP_FAILURE)] == ["broken"]
    # the collector was planned and is skipped; mapped steps were never instantiated
    assert [e.step_key for e in of_type(result, EventType.STEP_SKIPPED)] == ["total"]
    assert "double[a]" not in started(result)


def test_two_dynamic_outputs_on_one_op():
    @op(out={"evens": DynamicOut(int), "odds": DynamicOut(int)})
    def split():
        for i in range(4):
            yield DynamicOutput(i, f"n{i}", output_name="evens" if i % 2 == 0 else "odds")

    @job
    def j():
        evens, odds = split()
        as_list(evens.map(double).collect())
        as_list.alias("odd_list")(odds.collect())

    result = run(j)
    assert result.output_for("as_list") == [0, 4]
    assert result.output_for("odd_list") == [1, 3]
    assert result.output_for("split", "odds") == {"n1": 1, "n3": 3}


def test_mapped_steps_see_their_mapping_key_in_events():
    @job
    def j():
        fan().map(double)

    result = run(j)
    loaded = of_type(result, EventType.LOADED_INPUT, "double[c]")
    assert loaded[0].data["upstream_step"] == "fan"
    assert loaded[0].data["mapping_key"] == "c"
    outs = of_type(result, EventType.STEP_OUTPUT, "fan")
    assert [e.data["mapping_key"] for e in outs] == ["b", "a", "c"]


def test_a_nested_graph_can_map_and_collect_a_fan_out_it_is_given():
    @graph
    def per_item(items):
        return total(items.map(double).collect())

    @job
    def j():
        inc(per_item(fan()))

    result = run(j)
    assert started(result) == [
        "fan", "per_item.double[b]", "per_item.double[a]", "per_item.double[c]", "per_item.total", "inc",
    ]  # fmt: skip
    assert result.output_for("inc") == 13
    with pytest.raises(PlaitDefinitionError, match=r"inputs that nothing feeds \(double.x\)"):
        per_item.to_job()


def test_a_nested_graph_can_return_a_fan_out():
    @graph
    def source():
        return fan()

    @job
    def j():
        total(source().map(double).collect())

    result = run(j)
    assert "double[a]" in started(result)
    assert result.output_for("total") == 12
