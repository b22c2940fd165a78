"""Jobs the Celery executor tests run. Workers import them by code pointer
(``tests.executors.celery_jobs:<job>``), so they live at module level in an importable
module, and they talk to the test's Redis (``Signal`` config) to block and be released
without sleeping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import redis
from plait import Config, DynamicOut, DynamicOutput, OpContext, RetryPolicy, job, op


class Signal(Config):
    """Where an op waits to be released: a Redis list it BLPOPs, with a deadline."""

    url: str = ""
    key: str = ""
    timeout: float = 60.0


def _redis(signal: Signal) -> redis.Redis:
    return redis.Redis.from_url(signal.url, socket_timeout=signal.timeout + 10)


# ---- chain / fan-out ----------------------------------------------------------------------


@op
def one() -> int:
    return 1


@op
def add_one(x: int) -> int:
    return x + 1


@op(tags={"plait/priority": 2})
def double(x: int) -> int:
    return 2 * x


@job
def chain_job():
    double(add_one.alias("add_two")(add_one(one())))


@op(out=DynamicOut(int))
def split(context: OpContext):
    for i in range(6):
        yield DynamicOutput(i, mapping_key=f"k{i}")


@op
def square(x: int) -> int:
    return x * x


@op
def total(xs: list[int]) -> int:
    return sum(xs)


@job
def fanout_job():
    total(split().map(square).collect())


# ---- live logs, blocking, worker loss ----------------------------------------------------


@op
def chatty(context: OpContext, signal: Signal) -> str:
    """Logs, then waits until the test saw the log live and released it."""
    context.log.info("first line from pid %d", os.getpid())
    released = _redis(signal).blpop([signal.key], timeout=signal.timeout)
    context.log.info("released" if released else "never released")
    return "done" if released else "timed out"


@job
def chatty_job():
    chatty()


@op(retry_policy=RetryPolicy(max_retries=2, delay=0.1))
def fragile(context: OpContext, signal: Signal) -> int:
    """The first delivery blocks (the test kills its process); any later one returns."""
    runs = _redis(signal).incr(signal.key + ":runs")
    context.log.info("delivery %d of attempt %d", runs, context.retry_number)
    if runs == 1:
        _redis(signal).blpop([signal.key], timeout=signal.timeout)
    return int(runs)


@op
def after(x: int) -> int:
    return x + 100


@job
def fragile_job():
    after(fragile())


@op
def blocker(signal: Signal) -> str:
    """Blocks until released (or its deadline): something to cancel."""
    released = _redis(signal).blpop([signal.key], timeout=signal.timeout)
    return "released" if released else "timed out"


@job
def blocking_job():
    blocker()


@op
def spawning_blocker(context: OpContext, signal: Signal) -> str:
    """Starts a child process (as ops calling command-line tools do), logs its pid, then
    blocks until released (or its deadline): canceling the run must end the child too."""
    child = subprocess.Popen([sys.executable, "-c",
                              f"import threading; threading.Event().wait({signal.timeout})"])
    context.log.info("child started", child=child.pid)
    try:
        released = _redis(signal).blpop([signal.key], timeout=signal.timeout)
    finally:
        child.kill()
        child.wait()
    return "released" if released else "timed out"


@job
def spawning_job():
    spawning_blocker()


@op(retry_policy=RetryPolicy(max_retries=3, delay=0.1), tags={"plait/priority": 1})
def held(context: OpContext, signal: Signal) -> int:
    """Blocks on the *signal* Redis (not the broker) so the broker can restart meanwhile."""
    if context.retry_number == 0:
        _redis(signal).blpop([signal.key], timeout=signal.timeout)
    return 10


@op(retry_policy=RetryPolicy(max_retries=3, delay=0.1))
def waiting() -> int:
    """Sent while ``held`` occupies the only worker: it sits in the broker's queue."""
    return 5


@op(retry_policy=RetryPolicy(max_retries=3, delay=0.1))
def combine(a: int, b: int) -> int:
    return a + b


@job
def restart_job():
    combine(held(), waiting())


@op(timeout=7200)
def slow_op() -> int:
    return 1


@job
def long_timeout_job():
    slow_op()


@op(timeout=1.0)
def stuck(signal: Signal) -> str:
    """Runs past its 1 s timeout (unless released): the coordinator kills it."""
    released = _redis(signal).blpop([signal.key], timeout=signal.timeout)
    return "released" if released else "timed out"


@job
def timeout_job():
    stuck()


@op
def counted_blocker(signal: Signal) -> str:
    """Counts its runs, then blocks until released (or its deadline)."""
    _redis(signal).incr(signal.key + ":runs")
    released = _redis(signal).blpop([signal.key], timeout=signal.timeout)
    return "released" if released else "timed out"


@job
def blocking_pair_job():
    counted_blocker()
    counted_blocker.alias("counted_blocker_2")()


@op(tags={"plait/priority": -3})
def low_1() -> str:
    return "low"


@op(tags={"plait/priority": -3})
def low_2() -> str:
    return "low"


@op(tags={"plait/priority": 3})
def high_1() -> str:
    return "high"


@job
def priority_job():
    blocker()
    low_1()
    low_2()
    high_1()


@op
def suicidal() -> int:
    """Kills its own process on every delivery: a poison step."""
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@job
def poison_job():
    suicidal()
