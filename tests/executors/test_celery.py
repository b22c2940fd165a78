"""The Celery executor against a real redis-server and real ``plait celery worker``
processes (tests/services/redis.py, tests/services/celery_workers.py).

Jobs come from tests/executors/celery_jobs.py (module pointers) or from files written to
tmp_path (path pointers); outputs go to ``Instance(tmp_path)``, a path every worker on
this machine sees. Ops that must block wait on a Redis list the test pushes to; every
wait has a deadline.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import yaml
from plait import (
    Event,
    EventType,
    ExecutorError,
    Instance,
    RunConfigError,
    RunResult,
    RunStatus,
    job,
    op,
)

from tests.executors import celery_jobs
from tests.services._require import free_port
from tests.services.redis import KeyspaceWatch

pytestmark = pytest.mark.services

RUN_DEADLINE = 90.0


def assert_recorded_once(result: RunResult) -> None:
    """Sequence numbers are gap-free, no step attempt ended twice, and no event (same
    step, attempt, type, message and time) was recorded twice."""
    assert [e.seq for e in result.events] == list(range(1, len(result.events) + 1))
    ends = {EventType.STEP_SUCCESS, EventType.STEP_FAILURE}
    counted = collections.Counter(
        (e.step_key, e.attempt) for e in result.events if e.event_type in ends
    )
    assert [k for k, n in counted.items() if n > 1] == []
    starts = collections.Counter(
        (e.step_key, e.attempt, e.message) for e in result.events
        if e.event_type is EventType.STEP_START
    )
    assert [k for k, n in starts.items() if n > 1] == []
    texts = collections.Counter(
        (e.step_key, e.attempt, e.event_type, e.message, e.timestamp) for e in result.events
    )
    assert [k for k, n in texts.items() if n > 1] == []


def workers_of(result: RunResult, step_key: str) -> list[str]:
    return [e.data.get("worker") for e in result.events_for(step_key)
            if e.event_type is EventType.STEP_START]


def signal_config(redis_url: str, **extra: Any) -> dict[str, Any]:
    return {"url": redis_url, "key": f"plait-test:{uuid.uuid4().hex}", **extra}


class RunInThread:
    """Runs ``job.execute`` in a thread; events are collected and can be awaited."""

    def __init__(self, job_def: Any, **kwargs: Any) -> None:
        self.events: list[Event] = []
        self._cond = threading.Condition()
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(job_def, kwargs), daemon=True)

    def _on_event(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def _run(self, job_def: Any, kwargs: dict[str, Any]) -> None:
        try:
            self.result = job_def.execute(on_event=self._on_event, raise_on_error=False, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.error = exc

    def start(self) -> RunInThread:
        self._thread.start()
        return self

    def wait_for(self, event_type: EventType, step_key: str | None = None,
                 timeout: float = 60.0) -> Event:
        def found() -> Event | None:
            return next((e for e in self.events if e.event_type is event_type
                         and (step_key is None or e.step_key == step_key)), None)

        with self._cond:
            assert self._cond.wait_for(lambda: found() is not None, timeout), (
                f"no {event_type} for {step_key} within {timeout}s; events: "
                + "\n".join(map(str, self.events)))
            event = found()
            assert event is not None
            return event

    def join(self, timeout: float = RUN_DEADLINE) -> RunResult:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), (
            f"the run did not end within {timeout}s; events:\n" + "\n".join(map(str, self.events)))
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


# ---- running jobs ---------------------------------------------------------------------------


def test_chain_runs_on_the_workers_with_outputs_in_shared_storage(celery_fleet, tmp_path):
    result = celery_jobs.chain_job.execute(
        run_config=celery_fleet.run_config(), instance=Instance(tmp_path / "home"))
    assert result.success
    assert result.output_for("double") == 6
    hosts = {w.hostname for w in celery_fleet.workers}
    for step in ("one", "add_one", "add_two", "double"):
        assert set(workers_of(result, step)) <= hosts
    stored = list((tmp_path / "home" / "storage" / result.run_id).rglob("result"))
    assert len(stored) == 4
    assert_recorded_once(result)


def test_fan_out_and_collect(celery_fleet, tmp_path):
    result = celery_jobs.fanout_job.execute(
        run_config=celery_fleet.run_config(), instance=Instance(tmp_path))
    assert result.success
    assert result.output_for("total") == sum(i * i for i in range(6))
    assert {f"square[k{i}]" for i in range(6)} <= {e.step_key for e in result.events}
    assert_recorded_once(result)


ROUTED_JOB = """
from plait import job, op

@op
def light() -> int:
    return 1

@op(tags={{"celery/queue": "{heavy}"}})
def heavy(x: int) -> int:
    return x * 100

@job
def routed():
    heavy(light())
"""


def test_path_pointer_and_routing_to_a_queue_only_one_worker_serves(celery_fleet, tmp_path):
    from plait import load_job

    path = tmp_path / "routed_jobs.py"
    path.write_text(textwrap.dedent(ROUTED_JOB.format(heavy=celery_fleet.heavy_queue)))
    routed = load_job(f"{path}:routed")
    result = routed.execute(run_config=celery_fleet.run_config(), instance=Instance(tmp_path))
    assert result.success
    assert result.output_for("heavy") == 100
    heavy_worker = celery_fleet.workers[1].hostname  # the only one consuming the heavy queue
    assert workers_of(result, "heavy") == [heavy_worker]


def test_log_lines_arrive_while_the_step_runs(celery_fleet, redis_url, tmp_path):
    sig = signal_config(redis_url)
    run = RunInThread(
        celery_jobs.chatty_job, instance=Instance(tmp_path),
        run_config={**celery_fleet.run_config(), "ops": {"chatty": {"config": sig}}},
    ).start()
    first = run.wait_for(EventType.LOG, "chatty")
    assert first.message.startswith("first line from pid")
    assert not any(e.event_type is EventType.STEP_SUCCESS for e in run.events)
    redis.Redis.from_url(redis_url).lpush(sig["key"], "go")  # release the step
    result = run.join()
    assert result.success
    assert result.output_for("chatty") == "done"
    assert [e.message for e in result.events_for("chatty") if e.event_type is EventType.LOG] == [
        first.message, "released"]
    assert_recorded_once(result)


def test_a_worker_started_after_the_run_was_submitted_picks_the_step_up(
        celery_fleet, worker_factory, tmp_path):
    queue = f"late-{uuid.uuid4().hex[:8]}"
    late: list[Any] = []

    def start_late_worker(event: Event) -> None:
        if event.event_type is EventType.RUN_START:
            late.append(worker_factory(celery_fleet.broker, celery_fleet.backend, [queue],
                                       wait=False))

    result = celery_jobs.chain_job.execute(
        run_config=celery_fleet.run_config(queue=queue), instance=Instance(tmp_path),
        on_event=start_late_worker)
    assert result.success
    assert set(workers_of(result, "one")) == {late[0].hostname}


# ---- failures the executor reports -------------------------------------------------------------


def test_no_worker_on_the_queue_fails_after_worker_wait_timeout(celery_fleet, tmp_path):
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    result = celery_jobs.chain_job.execute(
        run_config=celery_fleet.run_config(queue=queue, worker_wait_timeout=1.0),
        instance=Instance(tmp_path), raise_on_error=False)
    assert not result.success
    assert time.monotonic() - started < 30
    failure = next(e for e in result.events if e.event_type is EventType.STEP_FAILURE)
    assert failure.data["kind"] == "lost"
    assert f"no worker consumed queue {queue!r} within 1s" in failure.message
    assert f"-Q {queue}" in failure.message


def test_unreachable_broker_is_an_error_naming_the_url(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    with pytest.raises(ExecutorError, match="cannot reach the Celery broker at") as info:
        celery_jobs.chain_job.execute(
            run_config={"execution": {"celery": {"broker": url, "connect_timeout": 1.0}}},
            instance=Instance(tmp_path))
    assert url.split("/0")[0].replace("redis://", "") in str(info.value)
    assert time.monotonic() - started < 15


def test_a_job_without_code_pointer_is_refused_before_any_step(tmp_path):
    @op
    def local_op() -> int:
        return 1

    @job
    def local_job():
        local_op()

    with pytest.raises(ExecutorError, match="no importable code pointer") as info:
        local_job.execute(executor="celery", instance=Instance(tmp_path))
    assert "'celery'" in str(info.value)


def test_op_timeout_longer_than_the_visibility_timeout_is_refused(tmp_path):
    with pytest.raises(ExecutorError, match="visibility_timeout") as info:
        celery_jobs.long_timeout_job.execute(executor="celery", instance=Instance(tmp_path))
    assert "'slow_op' (timeout=7200s)" in str(info.value)
    assert "--visibility-timeout 9060" in str(info.value)


@pytest.mark.parametrize("bad, why", [
    ({"backend": "rpc://"}, "rpc:// result backend"),
    ({"config": {"task_serializer": "pickle"}}, "JSON only"),
    ({"broker": "amqp://guest@127.0.0.1//"}, "needs a Redis result backend"),
    ({"quue": "x"}, "quue"),
])
def test_unsafe_or_unknown_config_is_refused(bad, why, tmp_path):
    with pytest.raises(RunConfigError, match=why):
        celery_jobs.chain_job.execute(run_config={"execution": {"celery": bad}},
                                      instance=Instance(tmp_path))


# ---- cancel, worker loss, broker restart --------------------------------------------------------


def test_cancel_kills_the_running_step_and_ends_the_run_canceled(celery_fleet, redis_url, tmp_path):
    cancel = threading.Event()
    run = RunInThread(
        celery_jobs.blocking_job, instance=Instance(tmp_path), cancel=cancel,
        run_config={**celery_fleet.run_config(),
                    "ops": {"blocker": {"config": signal_config(redis_url)}}},
    ).start()
    start = run.wait_for(EventType.STEP_START, "blocker")
    cancel.set()
    result = run.join()
    assert result.status is RunStatus.CANCELED
    assert result.events[-1].event_type is EventType.RUN_CANCELED
    pid = start.data["pid"]
    gone, alive = psutil.wait_procs([_process(pid)], timeout=15) if _process(pid) else ([], [])
    assert not alive, f"the pool process {pid} running the canceled step still runs"


def test_cancel_kills_what_the_running_step_started(celery_fleet, redis_url, tmp_path):
    """The revoke signals the pool process's whole process group, not the process alone."""
    cancel = threading.Event()
    run = RunInThread(
        celery_jobs.spawning_job, instance=Instance(tmp_path), cancel=cancel,
        run_config={**celery_fleet.run_config(),
                    "ops": {"spawning_blocker": {"config": signal_config(redis_url)}}},
    ).start()
    child = run.wait_for(EventType.LOG, "spawning_blocker").data["child"]
    try:
        cancel.set()
        assert run.join().status is RunStatus.CANCELED
        process = _process(child)
        if process is not None:
            _, alive = psutil.wait_procs([process], timeout=15)
            assert not alive, f"the canceled step's child process {child} still runs"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def test_sigkill_of_the_pool_process_redelivers_the_same_attempt(
        celery_fleet, worker_factory, redis_url, tmp_path):
    queue = f"kill-{uuid.uuid4().hex[:8]}"
    worker = worker_factory(celery_fleet.broker, celery_fleet.backend, [queue])
    sig = signal_config(redis_url)
    run = RunInThread(
        celery_jobs.fragile_job, instance=Instance(tmp_path),
        run_config={**celery_fleet.run_config(queue=queue),
                    "ops": {"fragile": {"config": sig}}},
    ).start()
    start = run.wait_for(EventType.STEP_START, "fragile")
    run.wait_for(EventType.LOG, "fragile")  # it counted its delivery, and now blocks
    assert start.data["pid"] in worker.pool_pids()
    os.kill(start.data["pid"], signal.SIGKILL)
    result = run.join()
    assert result.success, [str(e) for e in result.events]
    assert result.output_for("fragile") == 2  # the second delivery of attempt 0
    assert result.output_for("after") == 102
    fragile = result.events_for("fragile")
    assert {e.attempt for e in fragile} == {0}
    assert not any(e.event_type is EventType.STEP_UP_FOR_RETRY for e in fragile)
    assert [e.message for e in fragile if e.event_type in (EventType.STEP_START, EventType.LOG)] == [
        "started (attempt 1)",
        "delivery 1 of attempt 0",
        f"the process (pid {start.data['pid']}) on worker {worker.hostname} running the step "
        "died: WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL) Job: 0.; "
        "Celery requeued it (redelivery 1 of 2)",
        "started (attempt 1), redelivered (delivery 2)",
        "delivery 2 of attempt 0",
    ]
    assert len([e for e in fragile if e.event_type is EventType.STEP_SUCCESS]) == 1
    assert_recorded_once(result)


def test_sigkill_of_the_whole_worker_fails_the_attempt_as_lost_and_retries(
        celery_fleet, worker_factory, redis_url, tmp_path):
    queue = f"node-{uuid.uuid4().hex[:8]}"
    doomed = worker_factory(celery_fleet.broker, celery_fleet.backend, [queue])
    sig = signal_config(redis_url)
    started = time.monotonic()
    run = RunInThread(
        celery_jobs.fragile_job, instance=Instance(tmp_path),
        run_config={**celery_fleet.run_config(queue=queue, lost_after=2.0),
                    "ops": {"fragile": {"config": sig}}},
    ).start()
    run.wait_for(EventType.LOG, "fragile")  # it counted its delivery, and now blocks
    doomed.kill()
    rescuer = worker_factory(celery_fleet.broker, celery_fleet.backend, [queue])
    result = run.join()
    assert result.success, [str(e) for e in result.events]
    assert time.monotonic() - started < RUN_DEADLINE
    retry = next(e for e in result.events_for("fragile")
                 if e.event_type is EventType.STEP_UP_FOR_RETRY)
    assert retry.data["kind"] == "lost"
    assert doomed.hostname in retry.message and "stopped sending heartbeats" in retry.message
    assert workers_of(result, "fragile") == [doomed.hostname, rescuer.hostname]
    assert_recorded_once(result)


def test_broker_restart_mid_run_ends_in_bounded_time(redis_factory, worker_factory, redis_url,
                                                     tmp_path):
    broker = redis_factory()
    worker = worker_factory(broker.db(0), broker.db(1), ["plait"])
    sig = signal_config(redis_url)
    config = {"broker": broker.db(0), "backend": broker.db(1), "lost_after": 3.0,
              "health_check_interval": 0.5, "worker_wait_timeout": 20.0}
    started = time.monotonic()
    run = RunInThread(
        celery_jobs.restart_job, instance=Instance(tmp_path),
        run_config={"execution": {"celery": config}, "ops": {"held": {"config": sig}}},
    ).start()
    run.wait_for(EventType.STEP_START, "held")
    broker.kill()
    broker.start()
    redis.Redis.from_url(redis_url).lpush(sig["key"], "go")
    result = run.join()
    assert time.monotonic() - started < RUN_DEADLINE
    assert result.status in (RunStatus.SUCCESS, RunStatus.FAILURE)
    failures = [e for e in result.events
                if e.event_type in (EventType.STEP_UP_FOR_RETRY, EventType.STEP_FAILURE)]
    assert {e.data["kind"] for e in failures} <= {"lost"}, [str(e) for e in failures]
    if result.success:
        assert result.output_for("combine") == 15
    assert_recorded_once(result)
    assert worker.proc.poll() is None


def test_a_step_past_its_timeout_is_killed_and_fails_as_timeout(celery_fleet, redis_url, tmp_path):
    run = RunInThread(
        celery_jobs.timeout_job, instance=Instance(tmp_path),
        run_config={**celery_fleet.run_config(),
                    "ops": {"stuck": {"config": signal_config(redis_url)}}},
    ).start()
    start = run.wait_for(EventType.STEP_START, "stuck")
    result = run.join()
    assert not result.success
    failure = next(e for e in result.events if e.event_type is EventType.STEP_FAILURE)
    assert failure.data["kind"] == "timeout"
    process = _process(start.data["pid"])
    if process is not None:
        _, alive = psutil.wait_procs([process], timeout=15)
        assert not alive, "the timed-out step's pool process was not killed"


def test_an_attempt_settled_while_it_runs_stores_no_output(celery_fleet, redis_url, tmp_path):
    """The coordinator gave up on the attempt (cancel, timeout, lost), or another delivery
    finished it first, while it still ran (no signal stops it: a revoke that never came,
    a threads pool): it stores no output, and its outcome does not replace the record
    that settled it. Sent as a bare ``plait.run_step`` message, so that the test owns the
    reply stream and the outcome record."""
    from plait.executors.base import JobRef, StepTask
    from plait.executors.wire import task_to_json
    from plait_celery import CeleryConfig, make_app
    from plait_celery.replies import outcome_key, stream_key
    from plait_celery.tasks import TASK_NAME

    sig = signal_config(redis_url)
    task = StepTask(run_id=uuid.uuid4().hex, step_key="blocker", node_key="blocker", attempt=0,
                    job=JobRef(pointer="tests.executors.celery_jobs:blocking_job"),
                    op_config=sig, default_io={"base_url": str(tmp_path)})
    stream, task_id = stream_key(uuid.uuid4().hex), f"plait-{uuid.uuid4().hex}"
    backend = redis.Redis.from_url(celery_fleet.backend, socket_timeout=30)
    app = make_app(CeleryConfig(**celery_fleet.config()))
    try:
        app.send_task(TASK_NAME, args=[task_to_json(task), {"stream": stream}],
                      task_id=task_id, queue=celery_fleet.queue)
        replies = _Replies(backend, stream)
        replies.next_of("event", lambda body: body["event_type"] == "STEP_START")
        backend.set(outcome_key(task_id), "{}")  # what the coordinator does when it gives up
        redis.Redis.from_url(redis_url).lpush(sig["key"], "go")  # the op returns now
        outcome = replies.next_of("outcome")
        record = backend.get(outcome_key(task_id))
    finally:
        backend.delete(stream, outcome_key(task_id))
        app.close()
    assert outcome["failure"]["kind"] == "canceled", outcome
    assert outcome["outputs"] == []
    assert not [e for e in outcome["events"] if e["event_type"] == "HANDLED_OUTPUT"]
    assert list(tmp_path.rglob("result")) == []
    assert record == b"{}"


class _Replies:
    """Reads a reply stream the way the executor does (blocking XREAD, with a deadline)."""

    def __init__(self, client: redis.Redis, stream: str) -> None:
        self._client, self._stream, self._last = client, stream, "0-0"

    def next_of(self, kind: str, wanted: Any = lambda body: True,
                timeout: float = 60.0) -> dict[str, Any]:
        import json

        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            answer = self._client.xread({self._stream: self._last}, block=int(left * 1000) + 1)
            for _key, entries in answer or []:
                for entry_id, fields in entries:
                    self._last = entry_id
                    body = json.loads(fields[b"body"])
                    if fields[b"kind"].decode() == kind and wanted(body):
                        return body
        raise AssertionError(f"no {kind!r} reply on {self._stream} within {timeout}s")


def test_cancel_revokes_queued_steps_too(celery_fleet, worker_factory, redis_url, tmp_path):
    queue = f"cancel-{uuid.uuid4().hex[:8]}"
    worker = worker_factory(celery_fleet.broker, celery_fleet.backend, [queue])
    sig = signal_config(redis_url)
    cancel = threading.Event()
    run = RunInThread(
        celery_jobs.blocking_pair_job, instance=Instance(tmp_path), cancel=cancel,
        run_config={**celery_fleet.run_config(queue=queue),
                    "ops": {"counted_blocker": {"config": sig},
                            "counted_blocker_2": {"config": sig}}},
    ).start()
    first = run.wait_for(EventType.STEP_START)
    # the other step waits in the broker: the only worker runs one step at a time
    with KeyspaceWatch(celery_fleet.broker, f"{queue}*") as taken, \
            KeyspaceWatch(celery_fleet.backend, f"plait:worker:{worker.hostname}") as beat:
        cancel.set()
        result = run.join()
        assert taken.wait({"rpop"}) == "rpop"  # the worker took the queued step...
        assert beat.wait({"set"}) == "set"  # ...and beat again after it
    assert result.status is RunStatus.CANCELED
    assert [e.step_key for e in result.events if e.event_type is EventType.STEP_START] == [
        first.step_key]
    assert sorted(e.step_key for e in result.events if e.event_type is EventType.STEP_FAILURE) \
        == ["counted_blocker", "counted_blocker_2"]
    assert redis.Redis.from_url(redis_url).get(sig["key"] + ":runs") == b"1"  # never ran


def test_plait_priority_orders_steps_waiting_in_the_broker(celery_fleet, worker_factory, redis_url,
                                                           tmp_path):
    """Executor level, so that the order of submission is ours: low-priority steps sent
    first still start after a high-priority one sent last."""
    from plait.executors.base import JobRef, StepTask
    from plait_celery import CeleryExecutor

    queue = f"prio-{uuid.uuid4().hex[:8]}"
    worker_factory(celery_fleet.broker, celery_fleet.backend, [queue])
    sig = signal_config(redis_url)
    job_def = celery_jobs.priority_job
    run_id = uuid.uuid4().hex
    starts: list[str] = []
    started = threading.Event()

    def task(key: str) -> StepTask:
        node = job_def.nodes[key]
        return StepTask(run_id=run_id, step_key=key, node_key=key, attempt=0,
                        job=JobRef(pointer="tests.executors.celery_jobs:priority_job"),
                        op_config=sig if key == "blocker" else None,
                        default_io={"base_url": str(tmp_path)}, tags=dict(node.op.tags))

    def on_event(event: Any) -> None:
        if event.event_type is EventType.STEP_START:
            starts.append(event.step_key)
            started.set()

    executor = CeleryExecutor(celery_fleet.config(queue=queue))
    executor.on_event = on_event
    with executor:
        handles = [executor.submit(task("blocker"))]
        assert started.wait(30)  # the only worker is busy: what follows waits in the broker
        handles += [executor.submit(task(k)) for k in ("low_1", "low_2", "high_1")]
        redis.Redis.from_url(redis_url).lpush(sig["key"], "go")
        outcomes: list[Any] = []
        deadline = time.monotonic() + 60
        while len(outcomes) < len(handles) and time.monotonic() < deadline:
            waiting = [h for h in handles if all(o.step_key != h.task.step_key for o in outcomes)]
            outcomes += executor.wait(waiting, deadline - time.monotonic())
    assert all(o.succeeded for o in outcomes) and len(outcomes) == 4
    assert starts == ["blocker", "high_1", "low_1", "low_2"]


def test_celery_priority_scale():
    from plait_celery.config import celery_priority

    assert [celery_priority(p, broker_is_redis=True) for p in (-9, -4, 0, 4, 9)] == [8, 8, 4, 0, 0]
    assert [celery_priority(p, broker_is_redis=False) for p in (-9, -4, 0, 4, 9)] == [0, 0, 4, 8, 8]


def test_a_step_that_kills_its_process_every_time_fails_as_crash(
        celery_fleet, worker_factory, tmp_path):
    queue = f"poison-{uuid.uuid4().hex[:8]}"
    worker = worker_factory(celery_fleet.broker, celery_fleet.backend, [queue])
    result = celery_jobs.poison_job.execute(
        run_config=celery_fleet.run_config(queue=queue, max_redeliveries=1),
        instance=Instance(tmp_path), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.events if e.event_type is EventType.STEP_FAILURE)
    assert failure.data["kind"] == "crash"
    assert "redelivered 1 time(s) already" in failure.message
    assert "max_redeliveries" in failure.message
    starts = [e for e in result.events if e.event_type is EventType.STEP_START]
    assert [e.message for e in starts] == [
        "started (attempt 1)", "started (attempt 1), redelivered (delivery 2)"]
    assert worker.proc.poll() is None  # the worker itself survives its pool processes


def test_plait_run_sends_a_file_job_to_the_workers(celery_fleet, tmp_path):
    """The CLI path: a relative ``file.py:job`` pointer reaches the workers absolute."""
    repo = Path(__file__).resolve().parents[2]
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(celery_fleet.run_config()))
    plait = Path(sys.executable).with_name("plait")
    command = [str(plait)] if plait.exists() else [sys.executable, "-m", "plait.cli"]
    done = subprocess.run(
        [*command, "run", "tests/executors/celery_jobs.py:fanout_job", "-c", str(config)],
        cwd=repo, env={**os.environ, "PLAIT_HOME": str(tmp_path / "home")},
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_resources_passed_to_execute_cannot_travel_as_json(celery_fleet, tmp_path):
    with pytest.raises(ExecutorError, match="cannot travel as JSON"):
        celery_jobs.chain_job.execute(run_config=celery_fleet.run_config(),
                                      instance=Instance(tmp_path), resources={"extra": object()})
