"""Events and RunResult: every event type where expected, ordering and numbering,
output_for / events_for, and raise_on_error."""

import pytest
from plait import (
    Event,
    EventType,
    Instance,
    PlaitError,
    RetryPolicy,
    RunResult,
    RunStatus,
    job,
    op,
)

from tests.core._helpers import of_type, run, types_of


@op
def one(context) -> int:
    context.log.info("making one")
    return 1


@op
def inc(x: int) -> int:
    return x + 1


class Boom(Exception):
    pass


@op
def explode(x: int) -> int:
    raise Boom(f"exploded on {x}")


@job
def good():
    inc(one())


@job
def bad():
    inc.alias("after")(explode(one()))
    inc(one.alias("side")())


def test_a_successful_run_has_every_step_event_in_order():
    result = run(good)
    assert isinstance(result, RunResult)
    assert result.success and result.status is RunStatus.SUCCESS
    assert types_of(result.events) == [
        EventType.RUN_START,
        EventType.STEP_START, EventType.LOG, EventType.STEP_OUTPUT, EventType.HANDLED_OUTPUT,
        EventType.STEP_SUCCESS,
        EventType.STEP_START, EventType.LOADED_INPUT, EventType.STEP_INPUT, EventType.STEP_OUTPUT,
        EventType.HANDLED_OUTPUT, EventType.STEP_SUCCESS,
        EventType.RUN_SUCCESS,
    ]  # fmt: skip
    start = result.events[0]
    assert start.data["executor"] == "in_process"
    assert start.data["selected"] == ["inc", "one"]
    assert start.message == "run of job 'good' started on executor 'in_process'"
    assert result.events[-1].message == "run succeeded"


def test_events_are_numbered_from_one_without_gaps_and_carry_the_run_id():
    result = run(bad, raise_on_error=False)
    assert [e.seq for e in result.events] == list(range(1, len(result.events) + 1))
    assert {e.run_id for e in result.events} == {result.run_id}
    assert all(isinstance(e, Event) for e in result.events)
    stamps = [e.timestamp for e in result.events]
    assert all(s > 0 for s in stamps)
    assert str(result.events[0]).startswith("#1 RUN_START: run of job 'bad'")


def test_step_events_carry_their_attempt_and_run_events_do_not():
    result = run(good)
    for event in result.events:
        if event.step_key is None:
            assert event.attempt is None
        else:
            assert event.attempt == 0


def test_a_failed_run_records_failure_skips_and_run_failure():
    result = run(bad, raise_on_error=False)
    assert not result.success
    assert result.status is RunStatus.FAILURE
    (failure,) = of_type(result, EventType.STEP_FAILURE)
    assert failure.step_key == "explode"
    assert failure.level == 40
    assert failure.message == "error: Boom: exploded on 1"
    assert failure.data["kind"] == "error"
    assert failure.data["error_type"] == "Boom"
    assert "Traceback" in failure.data["stack"] and "in explode" in failure.data["stack"]
    assert failure.data["metadata"] == {}
    (skip,) = of_type(result, EventType.STEP_SKIPPED)
    assert skip.step_key == "after"
    assert skip.message == "skipped: upstream step 'explode' failed"
    assert skip.data == {"reason": "upstream step 'explode' failed"}
    # independent branches still run
    assert result.output_for("inc") == 2
    end = result.events[-1]
    assert end.event_type is EventType.RUN_FAILURE
    assert end.message == "run failed: step(s) explode failed"
    assert end.data == {"failed_steps": ["explode"]}
    assert end.level == 40


def test_skips_cascade_downstream():
    @job
    def deep():
        inc.alias("c")(inc.alias("b")(inc.alias("a")(explode(one()))))

    result = run(deep, raise_on_error=False)
    skips = {e.step_key: e.data["reason"] for e in of_type(result, EventType.STEP_SKIPPED)}
    assert skips == {
        "a": "upstream step 'explode' failed",
        "b": "upstream step 'a' was skipped",
        "c": "upstream step 'b' was skipped",
    }
    assert result.step_status() == {
        "one": "succeeded", "explode": "failed", "a": "skipped", "b": "skipped", "c": "skipped",
    }  # fmt: skip


def test_step_up_for_retry_and_run_canceled_types_are_recorded():
    @op(retry_policy=RetryPolicy(max_retries=1))
    def once_flaky(context) -> int:
        if context.retry_number == 0:
            raise ValueError("first try")
        return 1

    @job
    def j():
        once_flaky()

    assert EventType.STEP_UP_FOR_RETRY in types_of(run(j).events)
    import threading

    cancel = threading.Event()
    cancel.set()
    assert types_of(run(j, cancel=cancel, raise_on_error=False).events)[-1] is EventType.RUN_CANCELED


def test_every_event_type_is_covered_by_some_run():
    # the union of the runs above covers the whole enum
    covered = set(types_of(run(good).events)) | set(types_of(run(bad, raise_on_error=False).events))
    covered |= {EventType.STEP_UP_FOR_RETRY, EventType.RUN_CANCELED}  # see the test above
    assert covered == set(EventType)


def test_events_for_a_step_and_output_for():
    result = run(good)
    assert types_of(result.events_for("one")) == [
        EventType.STEP_START, EventType.LOG, EventType.STEP_OUTPUT, EventType.HANDLED_OUTPUT,
        EventType.STEP_SUCCESS,
    ]  # fmt: skip
    assert result.events_for("nope") == []
    assert result.output_for("one") == 1
    assert result.output_for("inc", "result") == 2
    assert result.output_for("inc", output_name="result") == 2


def test_output_for_an_unknown_step_or_output_lists_what_was_stored():
    result = run(good)
    with pytest.raises(PlaitError) as err:
        result.output_for("nope")
    assert f"run {result.run_id} has no output 'result' of 'nope'; outputs it stored: inc.result, one.result" in str(err.value)
    with pytest.raises(PlaitError, match=r"has no output 'other' of 'inc'"):
        result.output_for("inc", "other")


def test_output_for_a_failed_step_is_an_error():
    result = run(bad, raise_on_error=False)
    with pytest.raises(PlaitError, match=r"has no output 'result' of 'explode'"):
        result.output_for("explode")


def test_raise_on_error_reraises_the_ops_own_exception_with_a_note_naming_the_step():
    with pytest.raises(Boom, match="exploded on 1") as err:
        run(bad)
    notes = getattr(err.value, "__notes__", [])
    assert any("raised by step 'explode' of run" in note for note in notes)


def test_raise_on_error_false_returns_the_failed_result_and_raise_for_status_raises():
    result = run(bad, raise_on_error=False)
    assert not result.success
    with pytest.raises(Boom):
        result.raise_for_status()
    run(good).raise_for_status()  # a successful run does not raise


def test_on_event_receives_every_recorded_event_in_order():
    received = []
    result = run(bad, raise_on_error=False, on_event=received.append)
    assert received == result.events


def test_events_are_stored_in_the_instance():
    instance = Instance.ephemeral()
    result = good.execute(instance=instance, tags={"who": "test"})
    stored = instance.storage.get_events(result.run_id)
    assert [e.seq for e in stored] == [e.seq for e in result.events]
    assert [e.event_type for e in stored] == types_of(result.events)
    record = instance.storage.get_run(result.run_id)
    assert record.status is RunStatus.SUCCESS
    assert record.job_name == "good"
    assert record.tags == {"who": "test"}
    assert record.end_time >= record.start_time


def test_failed_run_status_is_stored(tmp_path):
    instance = Instance(tmp_path / "home")
    try:
        result = bad.execute(instance=instance, raise_on_error=False)
        assert instance.storage.get_run(result.run_id).status is RunStatus.FAILURE
        assert [e.seq for e in instance.storage.get_events(result.run_id)] == [e.seq for e in result.events]
    finally:
        instance.close()


def test_run_ids_are_unique_per_run():
    assert run(good).run_id != run(good).run_id


def test_job_tags_and_run_tags_are_merged_into_the_run_record():
    @job(tags={"team": "data", "env": "dev"})
    def tagged():
        inc(one())

    instance = Instance.ephemeral()
    result = tagged.execute(instance=instance, tags={"env": "prod"})
    assert instance.storage.get_run(result.run_id).tags == {"team": "data", "env": "prod"}


def test_log_events_come_with_the_step_and_its_data():
    @op
    def chatty(context) -> None:
        context.log.info("%d rows", 3, table="t")
        context.log.warning("careful")

    @job
    def j():
        chatty()

    logs = of_type(run(j), EventType.LOG, "chatty")
    assert [(e.message, e.level, e.data) for e in logs] == [("3 rows", 20, {"table": "t"}), ("careful", 30, {})]


def test_step_success_carries_its_duration():
    (success,) = of_type(run(good), EventType.STEP_SUCCESS, "one")
    assert success.data["duration_s"] >= 0
    assert success.message.startswith("finished in ")


def test_loaded_input_and_handled_output_data():
    result = run(good)
    (loaded,) = of_type(result, EventType.LOADED_INPUT, "inc")
    assert loaded.data == {
        "input_name": "x", "upstream_step": "one", "upstream_output": "result",
        "mapping_key": None, "location": None,
    }  # fmt: skip
    (handled,) = of_type(result, EventType.HANDLED_OUTPUT, "one")
    assert handled.data["output_name"] == "result"
    assert handled.data["io_manager_key"] == "io_manager"
    assert handled.message == "stored output 'result' in memory"


@pytest.mark.parametrize("timeout", [None, 30], ids=["inline", "helper-thread"])
def test_a_steps_events_are_recorded_in_the_order_they_happened(timeout):
    # logs reach the coordinator live, the rest with the step's outcome: the log must
    # still come after the input was loaded and checked, and before the output
    @op(timeout=timeout)
    def logs_after_loading(context, x: int) -> int:
        context.log.info("got %d", x)
        return x

    @job
    def j():
        logs_after_loading(inc(one.alias("src")()))

    result = run(j)
    assert types_of(result.events_for("logs_after_loading")) == [
        EventType.STEP_START, EventType.LOADED_INPUT, EventType.STEP_INPUT, EventType.LOG,
        EventType.STEP_OUTPUT, EventType.HANDLED_OUTPUT, EventType.STEP_SUCCESS,
    ]  # fmt: skip
    stamps = [e.timestamp for e in result.events_for("logs_after_loading")]
    assert stamps == sorted(stamps)


def test_raise_for_status_twice_adds_the_step_note_once():
    result = run(bad, raise_on_error=False)
    for _ in range(2):
        with pytest.raises(Boom) as err:
            result.raise_for_status()
    assert len([n for n in err.value.__notes__ if "raised by step 'explode'" in n]) == 1


def test_a_failing_on_event_callback_does_not_fail_or_corrupt_the_run(caplog):
    instance = Instance.ephemeral()

    def broken_callback(event):
        raise RuntimeError(f"callback bug on {event.event_type}")

    result = good.execute(instance=instance, on_event=broken_callback)
    assert result.success
    assert instance.storage.get_run(result.run_id).status is RunStatus.SUCCESS
    assert "on_event callback" in caplog.text and "callback bug on RUN_START" in caplog.text
