"""The run loop (coordinator) through the executor seam: ready-queue order, concurrency up
to max_concurrent, crash/lost outcomes and retries, and fencing of duplicate or stale
outcomes. The executors here are small real executors built on ``plait.execute_step``."""

import threading
from collections import deque
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass, field, replace
from typing import ClassVar

import pytest
from plait import (
    DynamicOut,
    DynamicOutput,
    EventType,
    Executor,
    PlaitStepError,
    RetryPolicy,
    StepHandle,
    StepOutcome,
    StepTask,
    execute_step,
    job,
    op,
)
from plait._run.step import WorkerState
from plait.executors.in_process import InProcessExecutor
from pydantic import BaseModel, ConfigDict

from tests.core._helpers import of_type, run, started

# ---- ready-queue order (in-process: STEP_START order is submission order) ------------


def _op(name: str, priority: int | None = None, *, inputs: int = 0):
    tags = {"plait/priority": priority} if priority is not None else None
    params = ", ".join(f"x{i}" for i in range(inputs))
    namespace: dict = {}
    exec(f"def {name}({params}):\n    return 1\n", namespace)  # noqa: S102 - distinct op names
    return op(namespace[name], tags=tags)


def test_independent_steps_run_in_plan_order():
    a, b, c = _op("a"), _op("b"), _op("c")

    @job
    def j():
        c()
        a()
        b()

    assert started(run(j)) == ["c", "a", "b"]


def test_higher_priority_runs_first_then_plan_order():
    low, high, mid, neg, mid2 = _op("low"), _op("high", 10), _op("mid", 5), _op("neg", -1), _op("mid2", "5")

    @job
    def j():
        low()
        high()
        mid()
        neg()
        mid2()

    assert started(run(j)) == ["high", "mid", "mid2", "low", "neg"]


def test_a_released_dependent_competes_by_priority_and_plan_order():
    first, after, other, last = _op("first"), _op("after", inputs=1), _op("other"), _op("last")

    @job
    def j():
        after(first())  # after: plan order 1, released when first ends
        other()  # plan order 2, ready from the start
        last()

    # after was released by first and precedes other in plan order
    assert started(run(j)) == ["first", "after", "other", "last"]

    first2, after2, other2 = _op("first2"), _op("after2", 3, inputs=1), _op("other2", 1)

    @job
    def j2():
        after2(first2())
        other2()

    # other2 outranks first2; after2 outranks nothing left but runs last as it waits
    assert started(run(j2)) == ["other2", "first2", "after2"]


def test_priority_applies_to_mapped_steps_and_their_mapping_order():
    @op(out=DynamicOut())
    def fan():
        for key in ("z", "y", "x"):
            yield DynamicOutput(key, key)

    @op(tags={"plait/priority": 1})
    def urgent(v):
        return v

    plain = _op("plain")

    @job
    def j():
        plain.alias("late")()
        fan().map(urgent)

    # fan (order 1) runs after late (order 0); its mapped steps keep the yield order
    assert started(run(j)) == ["late", "fan", "urgent[z]", "urgent[y]", "urgent[x]"]


# ---- small real executors on the seam --------------------------------------------------


class ThreadsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_concurrent: int = 4


@dataclass(eq=False)
class _FutureHandle(StepHandle):
    future: futures.Future | None = None
    canceled: threading.Event = field(default_factory=threading.Event)


class ThreadPoolStepExecutor(Executor):
    """Steps on a thread pool: several in flight at once."""

    name: ClassVar[str] = "test_threads"
    config_model: ClassVar[type[BaseModel]] = ThreadsConfig
    crosses_processes: ClassVar[bool] = False

    def start(self) -> None:
        self._pool = futures.ThreadPoolExecutor(self.config.max_concurrent)
        self._state = WorkerState()

    def stop(self) -> None:
        self._pool.shutdown(wait=True)
        self._state.close()

    def submit(self, task: StepTask) -> StepHandle:
        handle = _FutureHandle(task)
        handle.future = self._pool.submit(execute_step, task, self.deliver, self._state, handle.canceled)
        return handle

    def wait(self, handles: Sequence[StepHandle], timeout: float | None) -> list[StepOutcome]:
        by_future = {h.future: h for h in handles}
        done, _ = futures.wait(list(by_future), timeout, return_when=futures.FIRST_COMPLETED)
        return [f.result() for f in done]

    def cancel(self, handle: StepHandle) -> None:
        handle.canceled.set()
        handle.future.cancel()

    def run_finished(self, run_id: str) -> None:
        self._state.close_run(run_id)


class ScriptedExecutor(Executor):
    """Runs steps synchronously, but can report an injected crash/lost outcome for chosen
    (step, attempt) pairs, report each outcome twice, or add a stale outcome."""

    name: ClassVar[str] = "test_scripted"
    config_model: ClassVar[type[BaseModel]] = ThreadsConfig
    crosses_processes: ClassVar[bool] = False

    def __init__(self, faults=None, duplicate=False, stale=False) -> None:
        super().__init__({"max_concurrent": 1})
        self.faults = dict(faults or {})
        self.duplicate = duplicate
        self.stale = stale
        self.queue: deque[StepHandle] = deque()
        self.state = WorkerState()
        self.submitted: list[tuple[str, int]] = []

    def submit(self, task: StepTask) -> StepHandle:
        self.submitted.append((task.step_key, task.attempt))
        handle = StepHandle(task)
        self.queue.append(handle)
        return handle

    def wait(self, handles: Sequence[StepHandle], timeout: float | None) -> list[StepOutcome]:
        task = self.queue.popleft().task
        kind = self.faults.get((task.step_key, task.attempt))
        if kind:
            outcome = StepOutcome.failed(task, kind, f"injected {kind}")
        else:
            outcome = execute_step(task, self.deliver, self.state)
        outcomes = [outcome]
        if self.duplicate:
            outcomes.append(outcome)
        if self.stale:
            outcomes.insert(0, replace(outcome, attempt=outcome.attempt + 5))
        return outcomes

    def cancel(self, handle: StepHandle) -> None:
        if handle in self.queue:
            self.queue.remove(handle)

    def run_finished(self, run_id: str) -> None:
        self.state.close_run(run_id)


def test_steps_run_concurrently_up_to_max_concurrent():
    barrier = threading.Barrier(3, timeout=10)
    lock = threading.Lock()
    running = {"now": 0, "max": 0}

    def body():
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        try:
            barrier.wait()  # only passes when three steps are in flight together
        finally:
            with lock:
                running["now"] -= 1
        return 1

    ops = []
    for name in ("p", "q", "r", "s", "t", "u"):
        namespace = {"body": body}
        exec(f"def {name}():\n    return body()\n", namespace)  # noqa: S102
        ops.append(op(namespace[name]))

    @op
    def gather(xs: list[int]) -> int:
        return sum(xs)

    @job
    def j():
        gather([o() for o in ops])

    result = run(j, executor=ThreadPoolStepExecutor(max_concurrent=3))
    assert result.output_for("gather") == 6
    assert running["max"] == 3


def test_crash_and_lost_outcomes_are_retried_like_any_failure():
    @op(retry_policy=RetryPolicy(max_retries=2))
    def one() -> int:
        return 7

    @job
    def j():
        one()

    executor = ScriptedExecutor(faults={("one", 0): "crash", ("one", 1): "lost"})
    result = run(j, executor=executor)
    assert result.success
    assert result.output_for("one") == 7
    retries = of_type(result, EventType.STEP_UP_FOR_RETRY)
    assert [e.data["kind"] for e in retries] == ["crash", "lost"]
    assert [e.attempt for e in retries] == [0, 1]
    assert retries[0].message.startswith("attempt 1 failed (crash): injected crash; retrying in")
    assert executor.submitted == [("one", 0), ("one", 1), ("one", 2)]


def test_a_crash_without_retries_fails_the_run_with_a_plait_step_error():
    one = _op("one")

    @job
    def j():
        one()

    executor = ScriptedExecutor(faults={("one", 0): "crash"})
    with pytest.raises(PlaitStepError) as err:
        run(j, executor=executor)
    assert err.value.step_key == "one"
    assert "step 'one' failed: injected crash" in str(err.value)

    result = run(j, executor=ScriptedExecutor(faults={("one", 0): "crash"}), raise_on_error=False)
    (failure,) = of_type(result, EventType.STEP_FAILURE)
    assert failure.data["kind"] == "crash"
    assert failure.message == "crash: injected crash"


def test_duplicate_and_stale_outcomes_are_fenced_off():
    @op(retry_policy=RetryPolicy(max_retries=1))
    def flaky(context) -> int:
        if context.retry_number == 0:
            raise ValueError("first")
        return 1

    after = _op("after", inputs=1)

    @job
    def j():
        after(flaky())

    result = run(j, executor=ScriptedExecutor(duplicate=True, stale=True))
    assert result.success
    assert [e.step_key for e in of_type(result, EventType.STEP_SUCCESS)] == ["flaky", "after"]
    assert len(of_type(result, EventType.STEP_START)) == 3
    assert len(of_type(result, EventType.STEP_UP_FOR_RETRY)) == 1
    assert [e.seq for e in result.events] == list(range(1, len(result.events) + 1))


def test_an_executor_instance_is_used_as_given_and_reusable_across_runs():
    one = _op("one")

    @job
    def j():
        one()

    executor = InProcessExecutor()
    with executor:  # kept open across runs: warm workers serve many runs
        assert run(j, executor=executor).success
        assert run(j, executor=executor).success
    assert run(j, executor=executor).events[0].data["executor"] == "in_process"


def test_all_steps_end_final_with_a_concurrent_executor_and_failures():
    boom_count = {"n": 0}

    @op
    def boom(x: int) -> int:
        boom_count["n"] += 1
        raise RuntimeError("x")

    @op(out=DynamicOut())
    def fan():
        for i in range(6):
            yield DynamicOutput(i, f"k{i}")

    @op
    def total(xs: list[int]) -> int:
        return sum(xs)

    @op
    def ident(x: int) -> int:
        return x

    @job
    def j():
        items = fan()
        total(items.map(ident).collect())
        total.alias("never")(items.map(boom).collect())

    result = run(j, executor=ThreadPoolStepExecutor(max_concurrent=4), raise_on_error=False)
    assert result.output_for("total") == 15
    assert boom_count["n"] == 6
    status = result.step_status()
    assert status["never"] == "skipped"
    assert sum(1 for k, s in status.items() if k.startswith("boom[") and s == "failed") == 6


def test_timeout_counts_from_the_step_start_not_from_submission():
    """A step queued in the engine longer than its timeout is not timed out: only the
    time since its STEP_START counts."""
    import threading as _threading

    from plait import Executor, Instance, execute_step, job, op
    from plait.executors.base import StepHandle
    from plait.executors.in_process import InProcessConfig

    release = _threading.Event()

    class QueueingExecutor(Executor):
        """Holds every task 'queued' until released, then runs it on a thread."""

        name = "queueing"
        config_model = InProcessConfig
        crosses_processes = False

        def __init__(self):
            super().__init__()
            self.done = []
            self.cond = _threading.Condition()

        def submit(self, task):
            handle = StepHandle(task)

            def work():
                release.wait(10)
                outcome = execute_step(task, self.deliver)
                with self.cond:
                    self.done.append(outcome)
                    self.cond.notify_all()

            _threading.Thread(target=work, daemon=True).start()
            return handle

        def wait(self, handles, timeout):
            with self.cond:
                self.cond.wait_for(lambda: self.done, timeout)
                out, self.done = self.done, []
            return out

        def cancel(self, handle):
            pass

    @op(timeout=0.3)
    def quick() -> int:
        return 1

    @job
    def queued():
        quick()

    timer = _threading.Timer(0.8, release.set)  # queued for longer than the timeout
    timer.start()
    try:
        result = queued.execute(executor=QueueingExecutor(), instance=Instance.ephemeral())
    finally:
        timer.cancel()
        release.set()
    assert result.success


def test_worker_state_loads_a_pickled_job_once_and_keeps_a_bounded_number():
    import cloudpickle
    from plait import job, op
    from plait._run.step import WorkerState
    from plait.executors.base import JobRef, StepTask

    @op
    def only() -> int:
        return 1

    jobs = []
    for i in range(3):
        @job(name=f"j{i}")
        def each():
            only()
        jobs.append(each)
    state = WorkerState(max_jobs=2)
    tasks = [StepTask("r", "only", "only", 0, JobRef(pickled=cloudpickle.dumps(j))) for j in jobs]
    first = state.job(tasks[0])
    assert first.name == "j0" and state.job(tasks[0]) is first  # cached
    state.job(tasks[1])
    state.job(tasks[2])
    assert len(state._jobs) == 2  # the least recently used one was dropped
