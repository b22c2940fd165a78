"""Gradual types: annotations are checked at runtime right before (inputs) and right
after (outputs) each op; a failed check is a STEP_FAILURE that is never retried."""

from typing import Any, Optional

import pytest
from plait import (
    EventType,
    In,
    Out,
    PlaitType,
    RetryPolicy,
    TypeCheck,
    job,
    op,
)

from tests.core._helpers import of_type, run


class Animal:
    pass


class Dog(Animal):
    pass


def _check_input(value: Any, annotation: Any):
    """Run a two-step job whose consumer declares ``annotation``; return the result."""

    @op
    def produce():
        return value

    @op(ins={"x": In(annotation)})
    def consume(x):
        return x

    @job
    def j():
        consume(produce())

    return run(j, raise_on_error=False)


ACCEPTED = [
    (1, int),
    ("s", str),
    (1, float),  # an int is an acceptable float, as in static typing
    (1.5, float),
    (True, bool),
    (None, Optional[int]),  # noqa: UP045 - typing.Optional is what users write
    (3, Optional[int]),  # noqa: UP045
    (3, int | None),
    ("x", int | str),
    ([1, 2], list[int]),
    ([], list[int]),
    ({"a": 1}, dict[str, int]),
    ({"a": [1.0, 2]}, dict[str, list[float]]),
    ((1, "a"), tuple[int, str]),
    ((1, 2, 3), tuple[int, ...]),
    ({1, 2}, set[int]),
    (object(), Any),
    (None, Any),
    (Dog(), Animal),
    ([Dog(), Animal()], list[Animal]),
    (None, None),
    ([1, "a"], list),
    ({"a": "b"}, dict),
]


@pytest.mark.parametrize(("value", "annotation"), ACCEPTED, ids=[repr(a) for _, a in ACCEPTED])
def test_values_that_fit_the_annotation_pass(value, annotation):
    result = _check_input(value, annotation)
    assert result.success, [e.message for e in of_type(result, EventType.STEP_FAILURE)]


REJECTED = [
    ("a", int, "expected int, got str 'a'"),
    (1.5, int, "expected int, got float 1.5"),
    (True, float, "expected float, got bool True"),
    (None, int, "expected int, got NoneType None"),
    ("x", Optional[int], "expected Optional[int], got str 'x'"),  # noqa: UP045
    ([1, "b"], list[int], "expected list[int], at index 1: expected int, got str 'b'"),
    ((1, 2), list[int], "expected list[int], got tuple (1, 2)"),
    ({"a": "1"}, dict[str, int], "expected dict[str, int], at key 'a': expected int, got str '1'"),
    ({1: 1}, dict[str, int], "expected dict[str, int], at key 1: expected str, got int 1"),
    ((1, 2), tuple[int, str], "expected tuple[int, str], at index 1: expected str, got int 2"),
    ((1,), tuple[int, str], "expected tuple[int, str], got a tuple of 1 items"),
    (Animal(), Dog, "expected Dog, got Animal"),
    (1, None, "expected None, got int 1"),
]


@pytest.mark.parametrize(
    ("value", "annotation", "problem"), REJECTED, ids=[repr(a) for _, a, _ in REJECTED]
)
def test_values_that_do_not_fit_fail_the_step_saying_which_input_expected_and_actual(
    value, annotation, problem
):
    result = _check_input(value, annotation)
    assert not result.success
    (failure,) = of_type(result, EventType.STEP_FAILURE, "consume")
    assert failure.message.startswith("error: input 'x' of op 'consume' failed its type check: ")
    assert problem in failure.message
    assert failure.data["error_type"] == "TypeCheckError"
    assert failure.data["kind"] == "error"
    # the op itself never ran: no output, and the failure came before any STEP_INPUT for x
    assert of_type(result, EventType.STEP_INPUT, "consume") == []


def test_long_values_are_shortened_in_the_message():
    result = _check_input("y" * 500, int)
    msg = of_type(result, EventType.STEP_FAILURE)[0].message
    assert "expected int, got str 'yyy" in msg
    assert "..." in msg and len(msg) < 300


def test_output_type_is_checked_right_after_the_op_and_nothing_is_stored():
    @op
    def produce() -> int:
        return "not an int"

    @op
    def after(x):
        return x

    @job
    def j():
        after(produce())

    result = run(j, raise_on_error=False)
    (failure,) = of_type(result, EventType.STEP_FAILURE, "produce")
    assert "output 'result' of op 'produce' failed its type check: expected int, got str 'not an int'" in failure.message
    assert of_type(result, EventType.STEP_OUTPUT, "produce") == []
    assert of_type(result, EventType.HANDLED_OUTPUT, "produce") == []
    (skip,) = of_type(result, EventType.STEP_SKIPPED)
    assert skip.step_key == "after"


def test_named_and_dynamic_outputs_are_checked_per_item():
    from plait import DynamicOut, DynamicOutput

    @op(out={"n": Out(int), "s": Out(str)})
    def two():
        return 1, 2

    @op(out=DynamicOut(int))
    def fan():
        yield DynamicOutput(1, "a")
        yield DynamicOutput("two", "b")

    @job
    def j():
        two()
        fan()

    result = run(j, raise_on_error=False)
    messages = {e.step_key: e.message for e in of_type(result, EventType.STEP_FAILURE)}
    assert "output 's' of op 'two' failed its type check: expected str, got int 2" in messages["two"]
    assert "output 'result'[b] of op 'fan' failed its type check: expected int, got str 'two'" in messages["fan"]


def test_passing_checks_are_recorded_in_step_input_and_step_output_events():
    @op
    def produce() -> list[int]:
        return [1]

    @op
    def consume(xs: list[int], n: int = 2) -> int:
        return len(xs) * n

    @job
    def j():
        consume(produce())

    result = run(j)
    inputs = {e.data["input_name"]: e.data["type"] for e in of_type(result, EventType.STEP_INPUT, "consume")}
    assert inputs == {"xs": "list[int]", "n": "int"}
    (out,) = of_type(result, EventType.STEP_OUTPUT, "produce")
    assert out.data["type"] == "list[int]"
    assert "passed its type check (list[int])" in out.message


def test_defaults_are_type_checked_too():
    @op
    def produce() -> int:
        return 1

    @op
    def consume(x: int, n: int = "two") -> int:  # type: ignore[assignment]
        return x

    @job
    def j():
        consume(produce())

    result = run(j, raise_on_error=False)
    assert "input 'n' of op 'consume' failed its type check: expected int, got str 'two'" in (
        of_type(result, EventType.STEP_FAILURE)[0].message
    )


def test_fan_in_input_is_checked_as_a_list():
    @op
    def a() -> int:
        return 1

    @op
    def b() -> str:
        return "2"

    @op
    def total(xs: list[int]) -> int:
        return sum(xs)

    @job
    def j():
        total([a(), b()])

    result = run(j, raise_on_error=False)
    assert "expected list[int], at index 1: expected int, got str '2'" in (
        of_type(result, EventType.STEP_FAILURE, "total")[0].message
    )


# ---- PlaitType ----------------------------------------------------------------------

Even = PlaitType("Even", lambda v: isinstance(v, int) and v % 2 == 0)
NonEmpty = PlaitType(
    "NonEmpty",
    lambda v: TypeCheck(bool(v), description=f"got an empty {type(v).__name__}" if not v else ""),
    description="a non-empty collection",
)


def test_plait_type_returning_bool():
    assert _check_input(4, Even).success
    result = _check_input(3, Even)
    msg = of_type(result, EventType.STEP_FAILURE)[0].message
    assert "input 'x' of op 'consume' failed its type check: expected Even, the type check failed" in msg


def test_plait_type_returning_type_check_with_a_description():
    assert _check_input([1], NonEmpty).success
    result = _check_input([], NonEmpty)
    msg = of_type(result, EventType.STEP_FAILURE)[0].message
    assert "expected NonEmpty, got an empty list" in msg


def test_plait_type_inside_generics_and_as_output_type():
    assert _check_input([2, 4], list[Even]).success  # type: ignore[valid-type]
    result = _check_input([2, 3], list[Even])  # type: ignore[valid-type]
    assert "at index 1: expected Even" in of_type(result, EventType.STEP_FAILURE)[0].message

    @op(out=Out(Even))
    def produce():
        return 5

    @job
    def j():
        produce()

    result = run(j, raise_on_error=False)
    assert "output 'result' of op 'produce' failed its type check: expected Even" in (
        of_type(result, EventType.STEP_FAILURE)[0].message
    )


def test_plait_type_whose_check_returns_a_non_bool_fails_with_a_clear_message():
    Bad = PlaitType("Bad", lambda v: "yes")
    result = _check_input(1, Bad)
    msg = of_type(result, EventType.STEP_FAILURE)[0].message
    assert "type check of PlaitType 'Bad' returned str; it must return a bool or a plait.TypeCheck" in msg


def test_plait_type_repr_and_event_type_name():
    assert repr(Even) == "PlaitType('Even')"

    @op
    def produce() -> Even:  # type: ignore[valid-type]
        return 2

    @job
    def j():
        produce()

    (out,) = of_type(run(j), EventType.STEP_OUTPUT)
    assert out.data["type"] == "Even"


# ---- not retried ------------------------------------------------------------------


def test_type_check_failures_are_not_retried():
    attempts = []

    @op(retry_policy=RetryPolicy(max_retries=3))
    def produce() -> int:
        attempts.append(1)
        return "x"

    @job
    def j():
        produce()

    result = run(j, raise_on_error=False)
    assert attempts == [1]
    assert of_type(result, EventType.STEP_UP_FOR_RETRY) == []
    (failure,) = of_type(result, EventType.STEP_FAILURE)
    assert failure.attempt == 0


def test_input_type_failure_is_not_retried_by_a_job_policy():
    @op
    def produce():
        return "x"

    @op
    def consume(x: int):
        return x

    @job(retry_policy=RetryPolicy(max_retries=2))
    def j():
        consume(produce())

    result = run(j, raise_on_error=False)
    assert of_type(result, EventType.STEP_UP_FOR_RETRY) == []
    assert len(of_type(result, EventType.STEP_START, "consume")) == 1


def test_one_shot_iterators_are_not_consumed_by_the_check():
    from collections.abc import Iterable

    @op
    def produce() -> Iterable[int]:
        return map(int, ["1", "2"])

    @op
    def consume(xs: Iterable[int]) -> list[int]:
        return list(xs)

    @job
    def j():
        consume(produce())

    assert run(j).output_for("consume") == [1, 2]
    # a re-iterable collection is still checked item by item
    assert not _check_input(["a"], Iterable[int]).success


def test_raise_on_error_raises_the_public_type_check_error():
    from plait import Instance, PlaitError, TypeCheckError, job, op

    @op
    def gives_text() -> int:
        return "text"  # type: ignore[return-value]

    @job
    def typed():
        gives_text()

    with pytest.raises(TypeCheckError, match="output 'result' of op 'gives_text'") as info:
        typed.execute(instance=Instance.ephemeral())
    assert isinstance(info.value, PlaitError)
