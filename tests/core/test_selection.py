"""op_selection: which steps of a job run."""

import pytest
from plait import DynamicOut, DynamicOutput, EventType, RunConfigError, graph, job, op

from tests.core._helpers import run, started


@op
def a() -> int:
    return 1


@op
def b(x: int) -> int:
    return x + 1


@op
def c(x: int) -> int:
    return x + 1


@op
def d() -> int:
    return 10


@op
def e(x: int, y: int) -> int:
    return x + y


@graph
def sub(x):
    return c.alias("y")(b.alias("x")(x))


@job
def pipeline():
    """a -> b -> c -> e <- d, and a -> sub.x -> sub.y"""
    x = a()
    e(c(b(x)), d())
    sub(x)


def selected(op_selection):
    result = run(pipeline, op_selection=op_selection)
    assert result.success
    assert result.events[0].data["selected"] == sorted(started(result))
    return set(started(result))


def test_no_selection_runs_everything():
    assert set(started(run(pipeline))) == {"a", "b", "c", "d", "e", "sub.x", "sub.y"}
    assert selected([]) == {"a", "b", "c", "d", "e", "sub.x", "sub.y"}


def test_a_name_selects_that_op():
    assert selected(["a"]) == {"a"}
    assert selected(["d"]) == {"d"}


def test_star_before_selects_all_ancestors():
    assert selected(["*c"]) == {"a", "b", "c"}
    assert selected(["*e"]) == {"a", "b", "c", "d", "e"}


def test_star_after_selects_all_descendants():
    assert selected(["b*", "a", "d"]) == {"a", "b", "c", "d", "e"}
    assert selected(["a*", "d"]) == {"a", "b", "c", "d", "e", "sub.x", "sub.y"}
    # e is downstream of a, but also needs d: selecting a* alone leaves e's input unfed
    with pytest.raises(RunConfigError, match=r"op 'e' needs 'd' \(input 'y'\), which is not selected"):
        run(pipeline, op_selection=["a*"])


def test_plus_before_selects_one_level_of_ancestors_per_plus():
    assert selected(["+b"]) == {"a", "b"}
    assert selected(["++c"]) == {"a", "b", "c"}


def test_plus_after_selects_one_level_of_descendants_per_plus():
    assert selected(["a+"]) == {"a", "b", "sub.x"}
    assert selected(["a++"]) == {"a", "b", "c", "sub.x", "sub.y"}


def test_several_clauses_are_united():
    assert selected(["a", "d"]) == {"a", "d"}
    assert selected(["*c", "d"]) == {"a", "b", "c", "d"}
    assert selected(["+b", "d"]) == {"a", "b", "d"}


def test_a_nested_graph_name_selects_all_its_ops():
    assert selected(["a", "sub"]) == {"a", "sub.x", "sub.y"}
    assert selected(["*sub.y"]) == {"a", "sub.x", "sub.y"}
    assert selected(["+sub"]) == {"a", "sub.x", "sub.y"}


def test_whitespace_around_a_clause_is_ignored():
    assert selected([" a "]) == {"a"}


def test_unknown_names_are_an_error_listing_the_ops_that_exist():
    with pytest.raises(RunConfigError) as err:
        run(pipeline, op_selection=["a", "nope", "*missing"])
    assert err.value.errors == [
        "op_selection: no op 'missing' in this job; its ops are: a, b, c, d, e, sub.x, sub.y",
        "op_selection: no op 'nope' in this job; its ops are: a, b, c, d, e, sub.x, sub.y",
    ]


def test_a_partial_prefix_is_not_a_graph_name():
    with pytest.raises(RunConfigError, match=r"no op 'su' in this job"):
        run(pipeline, op_selection=["su"])


def test_invalid_clause_is_an_error():
    with pytest.raises(RunConfigError, match=r"op_selection: '\*a\*b' is not a valid clause"):
        run(pipeline, op_selection=["*a*b"])


def test_an_op_whose_input_comes_from_an_unselected_op_is_an_error_saying_to_select_it():
    with pytest.raises(RunConfigError) as err:
        run(pipeline, op_selection=["c", "d"])
    (problem,) = err.value.errors
    assert problem == (
        "op_selection: op 'c' needs 'b' (input 'x'), which is not selected; select it too "
        "(e.g. '*c' selects all ancestors)"
    )


def test_every_unselected_upstream_is_listed():
    with pytest.raises(RunConfigError) as err:
        run(pipeline, op_selection=["e", "sub.y"])
    assert err.value.errors == [
        "op_selection: op 'e' needs 'c' (input 'x'), which is not selected; select it too (e.g. '*e' selects all ancestors)",
        "op_selection: op 'e' needs 'd' (input 'y'), which is not selected; select it too (e.g. '*e' selects all ancestors)",
        "op_selection: op 'sub.y' needs 'sub.x' (input 'x'), which is not selected; select it too (e.g. '*sub.y' selects all ancestors)",
    ]


def test_selection_error_comes_before_any_step_runs():
    events = []
    with pytest.raises(RunConfigError):
        run(pipeline, op_selection=["b"], on_event=events.append)
    assert events == []


# ---- dynamic jobs -------------------------------------------------------------------


@op(out=DynamicOut())
def fan():
    yield DynamicOutput(1, "p")
    yield DynamicOutput(2, "q")


@op
def total(xs: list[int]) -> int:
    return sum(xs)


@job
def dynamic():
    total(fan().map(b).collect())
    a()


def test_selecting_a_dynamic_producer_and_descendants():
    result = run(dynamic, op_selection=["fan*"])
    assert started(result) == ["fan", "b[p]", "b[q]", "total"]
    assert result.output_for("total") == 5


def test_selecting_only_the_producer_runs_no_mapped_steps():
    result = run(dynamic, op_selection=["fan"])
    assert started(result) == ["fan"]
    assert [e for e in result.events if e.event_type is EventType.STEP_SKIPPED] == []


def test_a_mapped_op_without_its_producer_is_an_error():
    with pytest.raises(RunConfigError) as err:
        run(dynamic, op_selection=["b"])
    assert "op_selection: op 'b' is mapped over 'fan', which is not selected" in err.value.errors
    assert any("op 'b' needs 'fan' (input 'x')" in p for p in err.value.errors)


def test_a_collector_without_the_mapped_op_is_an_error():
    with pytest.raises(RunConfigError, match=r"op 'total' needs 'b' \(input 'xs'\), which is not selected"):
        run(dynamic, op_selection=["fan", "total"])
