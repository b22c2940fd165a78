"""Op timeouts (in-process) and run cancellation: the `cancel` event, KeyboardInterrupt
raised in an op, and a real SIGINT while a step runs. No sleeps: ops block on events."""

import signal
import threading

import pytest
from plait import (
    ConfigurableResource,
    EventType,
    Instance,
    PlaitStepError,
    RetryPolicy,
    RunCanceledError,
    RunStatus,
    job,
    op,
)
from plait_io import MemoryIOManager, OutputContext

from tests.core._helpers import of_type, run, started, types_of

BLOCK_SECONDS = 10  # an op blocks at most this long: a test never hangs


def _join_step_threads(step_key: str) -> None:
    """Wait for abandoned in-process step threads (they run on after a timeout/cancel)."""
    for thread in threading.enumerate():
        if thread.name == f"plait-step-{step_key}":
            thread.join(BLOCK_SECONDS)
            assert not thread.is_alive()


# ---- timeouts -----------------------------------------------------------------------


def test_a_step_past_its_timeout_fails_with_kind_timeout_and_stores_nothing():
    release = threading.Event()
    store = MemoryIOManager()
    instance = Instance.ephemeral()

    @op(timeout=0.2)
    def stuck() -> int:
        release.wait(BLOCK_SECONDS)
        return 1

    @op
    def after(x: int) -> int:
        return x

    @job(resources={"io_manager": store})
    def j():
        after(stuck())

    try:
        result = j.execute(instance=instance, raise_on_error=False)
    finally:
        release.set()
        _join_step_threads("stuck")
    assert result.status is RunStatus.FAILURE
    (failure,) = of_type(result, EventType.STEP_FAILURE, "stuck")
    assert failure.data["kind"] == "timeout"
    assert failure.message == "timeout: step 'stuck' ran past its timeout of 0.2s"
    assert failure.attempt == 0
    (skip,) = of_type(result, EventType.STEP_SKIPPED)
    assert skip.step_key == "after" and skip.data["reason"] == "upstream step 'stuck' failed"
    # the abandoned attempt finished after the run, but stored no output and no event
    assert not store.has_output(OutputContext(result.run_id, "stuck", "result"))
    assert len(instance.storage.get_events(result.run_id)) == len(result.events)
    assert types_of(result.events)[-1] is EventType.RUN_FAILURE


def test_a_timeout_with_raise_on_error_raises_a_plait_step_error():
    release = threading.Event()

    @op(timeout=0.1)
    def stuck() -> int:
        release.wait(BLOCK_SECONDS)
        return 1

    @job
    def j():
        stuck()

    try:
        with pytest.raises(PlaitStepError) as err:
            run(j)
    finally:
        release.set()
        _join_step_threads("stuck")
    assert err.value.step_key == "stuck"
    assert "ran past its timeout of 0.1s" in str(err.value)


def test_a_timed_out_attempt_is_retried_and_the_late_attempt_cannot_replace_the_output():
    release = threading.Event()
    store = MemoryIOManager()

    @op(timeout=0.5, retry_policy=RetryPolicy(max_retries=1))
    def sometimes_stuck(context) -> str:
        if context.retry_number == 0:
            release.wait(BLOCK_SECONDS)
            return "stale"
        return "fresh"

    @job(resources={"io_manager": store})
    def j():
        sometimes_stuck()

    try:
        result = run(j)
    finally:
        release.set()
        _join_step_threads("sometimes_stuck")
    (retry,) = of_type(result, EventType.STEP_UP_FOR_RETRY)
    assert retry.data["kind"] == "timeout"
    assert retry.attempt == 0 and retry.data["next_attempt"] == 1
    assert result.output_for("sometimes_stuck") == "fresh"
    # no event of attempt 0 after its STEP_START: it was fenced off
    assert [e.event_type for e in result.events_for("sometimes_stuck") if e.attempt == 0] == [
        EventType.STEP_START,
        EventType.STEP_UP_FOR_RETRY,
    ]


def test_a_step_within_its_timeout_succeeds_and_its_errors_are_ordinary():
    @op(timeout=BLOCK_SECONDS)
    def quick(context) -> int:
        context.log.info("on a helper thread")
        return 1

    @op(timeout=BLOCK_SECONDS)
    def broken(x: int) -> int:
        raise ValueError("plain error")

    @job
    def j():
        broken(quick())

    result = run(j, raise_on_error=False)
    assert result.output_for("quick") == 1
    (failure,) = of_type(result, EventType.STEP_FAILURE)
    assert failure.data["kind"] == "error"
    assert of_type(result, EventType.LOG, "quick")[0].message == "on a helper thread"
    with pytest.raises(ValueError, match="plain error"):
        run(j)


# ---- cancel event -------------------------------------------------------------------


def _chain(store=None):
    @op
    def first() -> int:
        return 1

    @op
    def second(x: int) -> int:
        return x + 1

    @op
    def third(x: int) -> int:
        return x + 1

    resources = {"io_manager": store} if store else {}

    @job(resources=resources)
    def chain():
        third(second(first()))

    return chain


def _cancel_on(cancel: threading.Event, event_type: EventType, step_key: str):
    def on_event(event):
        if event.event_type is event_type and event.step_key == step_key:
            cancel.set()

    return on_event


def test_setting_cancel_from_on_event_cancels_the_run():
    cancel = threading.Event()
    result = run(
        _chain(),
        cancel=cancel,
        on_event=_cancel_on(cancel, EventType.STEP_SUCCESS, "first"),
        raise_on_error=False,
    )
    assert result.status is RunStatus.CANCELED
    assert not result.success
    assert started(result) == ["first"]
    assert result.events[-1].event_type is EventType.RUN_CANCELED
    assert result.events[-1].data == {"failed_steps": []}
    assert of_type(result, EventType.RUN_SUCCESS) == of_type(result, EventType.RUN_FAILURE) == []


def test_cancel_with_raise_on_error_raises_run_canceled_error():
    cancel = threading.Event()
    job_ = _chain()
    with pytest.raises(RunCanceledError, match=r"run \w+ of job 'chain' was canceled"):
        run(job_, cancel=cancel, on_event=_cancel_on(cancel, EventType.STEP_SUCCESS, "second"))


def test_a_cancel_set_before_the_run_starts_runs_nothing():
    cancel = threading.Event()
    cancel.set()
    result = run(_chain(), cancel=cancel, raise_on_error=False)
    assert result.status is RunStatus.CANCELED
    assert types_of(result.events) == [EventType.RUN_START, EventType.RUN_CANCELED]


def test_cancel_while_a_step_runs_abandons_it_and_stores_nothing():
    cancel = threading.Event()
    release = threading.Event()
    store = MemoryIOManager()

    @op(timeout=BLOCK_SECONDS)  # a timeout runs the step on a helper thread
    def long_running() -> int:
        release.wait(BLOCK_SECONDS)
        return 1

    @op
    def after(x: int) -> int:
        return x

    @job(resources={"io_manager": store})
    def j():
        after(long_running())

    try:
        result = run(
            j,
            cancel=cancel,
            on_event=_cancel_on(cancel, EventType.STEP_START, "long_running"),
            raise_on_error=False,
        )
    finally:
        release.set()
        _join_step_threads("long_running")
    assert result.status is RunStatus.CANCELED
    (failure,) = of_type(result, EventType.STEP_FAILURE)
    assert failure.step_key == "long_running"
    assert failure.data["kind"] == "canceled"
    assert failure.message == "canceled: run canceled while the step ran"
    assert result.events[-1].data == {"failed_steps": ["long_running"]}
    assert "after" not in started(result)
    assert not store.has_output(OutputContext(result.run_id, "long_running", "result"))


def test_resources_are_torn_down_when_a_run_is_canceled():
    calls = []

    class Res(ConfigurableResource):
        def setup(self) -> None:
            calls.append("setup")

        def teardown(self) -> None:
            calls.append("teardown")

    @op
    def use(res: Res) -> int:
        return 1

    @op
    def after(x: int) -> int:
        return x

    @job(resources={"res": Res()})
    def j():
        after(use())

    cancel = threading.Event()
    result = run(j, cancel=cancel, on_event=_cancel_on(cancel, EventType.STEP_SUCCESS, "use"), raise_on_error=False)
    assert result.status is RunStatus.CANCELED
    assert calls == ["setup", "teardown"]


# ---- KeyboardInterrupt / SIGINT ---------------------------------------------------------


@pytest.mark.parametrize("timeout", [None, BLOCK_SECONDS], ids=["inline", "helper-thread"])
def test_keyboard_interrupt_raised_in_an_op_cancels_the_run(timeout):
    @op
    def first() -> int:
        return 1

    @op(timeout=timeout)  # with a timeout, the step runs on a helper thread
    def interrupted(x: int) -> int:
        raise KeyboardInterrupt

    @op
    def never(x: int) -> int:
        return x

    @job
    def j():
        never(interrupted(first()))

    instance = Instance.ephemeral()
    result = j.execute(instance=instance, raise_on_error=False)
    assert result.status is RunStatus.CANCELED
    assert started(result) == ["first", "interrupted"]
    (failure,) = of_type(result, EventType.STEP_FAILURE)
    assert failure.step_key == "interrupted"
    assert failure.data["kind"] == "canceled"
    assert "interrupted (SIGINT)" in failure.message
    assert result.events[-1].event_type is EventType.RUN_CANCELED
    assert instance.storage.get_run(result.run_id).status is RunStatus.CANCELED

    with pytest.raises(RunCanceledError):
        run(j)


def test_a_real_sigint_while_a_step_runs_on_a_helper_thread_cancels_the_run():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT is delivered to the main thread only")
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default KeyboardInterrupt handler here")
    release = threading.Event()
    main = threading.main_thread().ident

    @op(timeout=BLOCK_SECONDS)
    def long_running() -> int:
        signal.pthread_kill(main, signal.SIGINT)  # as if the user pressed Ctrl-C
        release.wait(BLOCK_SECONDS)
        return 1

    @job
    def j():
        long_running()

    try:
        result = run(j, raise_on_error=False)
    finally:
        release.set()
        _join_step_threads("long_running")
    assert result.status is RunStatus.CANCELED
    (failure,) = of_type(result, EventType.STEP_FAILURE)
    assert failure.data["kind"] == "canceled"
    assert result.events[-1].event_type is EventType.RUN_CANCELED
