"""Retries: RetryPolicy delays (backoff, jitter), retried runs with STEP_UP_FOR_RETRY,
Failure(allow_retries=False) and RetryRequested from op code."""

import random

import pytest
from plait import (
    Backoff,
    EventType,
    Failure,
    Jitter,
    RetryPolicy,
    RetryRequested,
    job,
    op,
)

from tests.core._helpers import of_type, run, types_of

# ---- delay_for, deterministic ----------------------------------------------------


def test_no_delay_means_retry_at_once():
    assert RetryPolicy(max_retries=3).delay_for(1) == 0.0
    assert RetryPolicy(max_retries=3, delay=0).delay_for(5) == 0.0


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        (Backoff.EXPONENTIAL, [1.0, 2.0, 4.0, 8.0]),
        (Backoff.LINEAR, [1.0, 2.0, 3.0, 4.0]),
        (None, [1.0, 1.0, 1.0, 1.0]),
    ],
)
def test_backoff_without_jitter(backoff, expected):
    policy = RetryPolicy(max_retries=4, delay=1.0, backoff=backoff, jitter=None)
    assert [policy.delay_for(n) for n in (1, 2, 3, 4)] == expected


def test_full_jitter_is_uniform_between_zero_and_the_backoff_delay():
    policy = RetryPolicy(max_retries=3, delay=0.5, backoff=Backoff.EXPONENTIAL, jitter=Jitter.FULL)
    rng, ref = random.Random(7), random.Random(7)
    got = [policy.delay_for(n, rng) for n in (1, 2, 3)]
    assert got == [ref.uniform(0, 0.5), ref.uniform(0, 1.0), ref.uniform(0, 2.0)]
    assert all(0 <= g <= 0.5 * 2 ** (n - 1) for n, g in zip((1, 2, 3), got, strict=True))
    # the same seed gives the same delays
    assert [policy.delay_for(n, random.Random(7)) for n in (1,)] == got[:1]


def test_plus_minus_jitter_adds_up_to_the_base_delay_either_way_never_below_zero():
    policy = RetryPolicy(max_retries=3, delay=1.0, backoff=Backoff.LINEAR, jitter=Jitter.PLUS_MINUS)
    rng, ref = random.Random(3), random.Random(3)
    got = [policy.delay_for(n, rng) for n in (1, 2, 3)]
    assert got == [max(0.0, n * 1.0 + ref.uniform(-1.0, 1.0)) for n in (1, 2, 3)]
    for seed in range(50):
        assert policy.delay_for(1, random.Random(seed)) >= 0.0


def test_the_default_policy_is_one_retry_exponential_full_jitter():
    policy = RetryPolicy()
    assert policy.max_retries == 1
    assert policy.backoff is Backoff.EXPONENTIAL
    assert policy.jitter is Jitter.FULL


def test_invalid_policies_are_rejected():
    with pytest.raises(ValueError, match=r"max_retries must be >= 0, got -1"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match=r"delay must be >= 0 seconds, got -2"):
        RetryPolicy(delay=-2)


# ---- retried runs ----------------------------------------------------------------


def test_a_step_that_fails_twice_then_succeeds():
    seen = []

    @op(retry_policy=RetryPolicy(max_retries=3, delay=0.001))
    def flaky(context) -> int:
        seen.append(context.retry_number)
        if context.retry_number < 2:
            raise ConnectionError(f"attempt {context.retry_number} failed")
        return 42

    @op
    def after(x: int) -> int:
        return x + 1

    @job
    def j():
        after(flaky())

    result = run(j)
    assert result.success
    assert seen == [0, 1, 2]
    assert result.output_for("after") == 43
    retries = of_type(result, EventType.STEP_UP_FOR_RETRY, "flaky")
    assert [e.attempt for e in retries] == [0, 1]
    assert [e.data["next_attempt"] for e in retries] == [1, 2]
    assert all(e.data["kind"] == "error" and e.data["error_type"] == "ConnectionError" for e in retries)
    assert all(0 <= e.data["delay_s"] <= 0.001 * 2 ** e.attempt for e in retries)
    assert "attempt 1 failed (error): ConnectionError: attempt 0 failed; retrying in" in retries[0].message
    assert "ConnectionError: attempt 0 failed" in retries[0].data["stack"]
    assert retries[0].level == 30
    starts = of_type(result, EventType.STEP_START, "flaky")
    assert [e.attempt for e in starts] == [0, 1, 2]
    assert [e.message for e in starts] == [f"started (attempt {n})" for n in (1, 2, 3)]
    assert of_type(result, EventType.STEP_FAILURE) == []
    assert types_of(result.events, "flaky") == [
        EventType.STEP_START, EventType.STEP_UP_FOR_RETRY,
        EventType.STEP_START, EventType.STEP_UP_FOR_RETRY,
        EventType.STEP_START, EventType.STEP_OUTPUT, EventType.HANDLED_OUTPUT, EventType.STEP_SUCCESS,
    ]  # fmt: skip


def test_retries_exhausted_fail_the_step_with_its_last_attempt_number():
    @op(retry_policy=RetryPolicy(max_retries=2))
    def always() -> int:
        raise ValueError("nope")

    @job
    def j():
        always()

    result = run(j, raise_on_error=False)
    assert len(of_type(result, EventType.STEP_UP_FOR_RETRY)) == 2
    (failure,) = of_type(result, EventType.STEP_FAILURE)
    assert failure.attempt == 2
    assert failure.data["kind"] == "error"
    assert failure.message == "error: ValueError: nope"


def test_without_a_policy_a_failure_is_final():
    @op
    def once() -> int:
        raise ValueError("nope")

    @job
    def j():
        once()

    result = run(j, raise_on_error=False)
    assert of_type(result, EventType.STEP_UP_FOR_RETRY) == []
    assert of_type(result, EventType.STEP_FAILURE)[0].attempt == 0


def test_failure_with_allow_retries_false_is_not_retried():
    @op(retry_policy=RetryPolicy(max_retries=5))
    def bad_data() -> int:
        raise Failure("bad input file", metadata={"path": "/x.csv", "rows": 0}, allow_retries=False)

    @job
    def j():
        bad_data()

    result = run(j, raise_on_error=False)
    assert of_type(result, EventType.STEP_UP_FOR_RETRY) == []
    (failure,) = of_type(result, EventType.STEP_FAILURE)
    assert failure.message == "error: bad input file"
    assert failure.data["metadata"] == {"path": "/x.csv", "rows": 0}
    assert failure.data["error_type"] == "Failure"


def test_failure_that_allows_retries_is_retried():
    @op(retry_policy=RetryPolicy(max_retries=1))
    def transient(context) -> int:
        if context.retry_number == 0:
            raise Failure("try again", metadata={"n": 1})
        return 1

    @job
    def j():
        transient()

    result = run(j)
    (retry,) = of_type(result, EventType.STEP_UP_FOR_RETRY)
    assert retry.data["metadata"] == {"n": 1}


def test_retry_requested_retries_without_a_policy():
    seen = []

    @op
    def asks(context) -> int:
        seen.append(context.retry_number)
        if context.retry_number < 2:
            raise RetryRequested(max_retries=2, seconds_to_wait=0.001)
        return 1

    @job
    def j():
        asks()

    result = run(j)
    assert result.success
    assert seen == [0, 1, 2]
    retries = of_type(result, EventType.STEP_UP_FOR_RETRY)
    assert [e.data["delay_s"] for e in retries] == [0.001, 0.001]
    assert retries[0].data["error_type"] == "RetryRequested"


def test_retry_requested_beyond_its_max_fails():
    @op(retry_policy=RetryPolicy(max_retries=10))
    def asks() -> int:
        raise RetryRequested(max_retries=1)

    @job
    def j():
        asks()

    result = run(j, raise_on_error=False)
    assert len(of_type(result, EventType.STEP_UP_FOR_RETRY)) == 1
    (failure,) = of_type(result, EventType.STEP_FAILURE)
    assert failure.attempt == 1
    assert "retry requested (max_retries=1)" in failure.message


def test_job_retry_policy_applies_to_ops_without_their_own():
    counts = {"a": 0, "b": 0}

    @op
    def a() -> int:
        counts["a"] += 1
        raise ValueError("a")

    @op(retry_policy=RetryPolicy(max_retries=0))
    def b() -> int:
        counts["b"] += 1
        raise ValueError("b")

    @job(retry_policy=RetryPolicy(max_retries=2))
    def j():
        a()
        b()

    result = run(j, raise_on_error=False)
    assert counts == {"a": 3, "b": 1}  # the op's own policy wins over the job's
    assert sorted(e.step_key for e in of_type(result, EventType.STEP_FAILURE)) == ["a", "b"]


def test_raise_on_error_raises_the_last_attempts_exception():
    @op(retry_policy=RetryPolicy(max_retries=1))
    def flaky(context) -> int:
        raise KeyError(f"attempt {context.retry_number}")

    @job
    def j():
        flaky()

    with pytest.raises(KeyError, match="attempt 1"):
        run(j)


def test_a_retrying_step_does_not_hold_back_independent_steps():
    order = []

    @op(retry_policy=RetryPolicy(max_retries=1, delay=0.05, jitter=None))
    def slow_retry(context) -> int:
        order.append(f"slow{context.retry_number}")
        if context.retry_number == 0:
            raise ValueError("later")
        return 1

    @op
    def other() -> int:
        order.append("other")
        return 2

    @job
    def j():
        slow_retry()
        other()

    assert run(j).success
    assert order == ["slow0", "other", "slow1"]


def test_waiting_out_a_backoff_does_not_spin():
    from plait.executors.in_process import InProcessExecutor

    class CountingExecutor(InProcessExecutor):
        waits = 0

        def wait(self, handles, timeout):
            CountingExecutor.waits += 1
            return super().wait(handles, timeout)

    @op(retry_policy=RetryPolicy(max_retries=1, delay=0.2, backoff=None, jitter=None))
    def flaky(context) -> int:
        if context.retry_number == 0:
            raise ValueError("first")
        return 1

    @job
    def j():
        flaky()

    assert run(j, executor=CountingExecutor()).success
    assert CountingExecutor.waits <= 3  # one per attempt (+1 slack), not one per spin


@pytest.mark.timeout(60)  # the backoff is an hour: only waking on cancel ends this test
def test_cancel_during_a_backoff_ends_the_run_at_once():
    import threading

    from plait import RunStatus

    @op(retry_policy=RetryPolicy(max_retries=1, delay=3600, backoff=None, jitter=None))
    def flaky() -> int:
        raise ValueError("first")

    @job
    def j():
        flaky()

    cancel = threading.Event()

    def on_event(event):
        if event.event_type is EventType.STEP_UP_FOR_RETRY:
            cancel.set()

    result = run(j, cancel=cancel, on_event=on_event, raise_on_error=False)
    assert result.status is RunStatus.CANCELED
    assert result.events[-1].event_type is EventType.RUN_CANCELED
