"""The jobs of the executor conformance suite.

They live at module level in an installed module so that every executor, including
those that import jobs by code pointer (Celery), can load them. State that must survive
across processes and attempts (attempt counters, "fail until fixed" flags) is kept in
files under a ``state_dir`` passed through op config.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from plait import (
    Config,
    ConfigurableResource,
    DynamicOut,
    DynamicOutput,
    Failure,
    Out,
    Output,
    RetryPolicy,
    graph,
    job,
    op,
)
from plait.retry import Backoff, Jitter


class StateConfig(Config):
    state_dir: str


def _bump(state_dir: str, name: str) -> int:
    """Count calls of ``name`` in a file: how many times an op really ran."""
    path = Path(state_dir) / f"{name}.count"
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    return count


# -- chain, diamond -----------------------------------------------------------------


@op
def one() -> int:
    return 1


@op
def add_one(x: int) -> int:
    return x + 1


@op
def times_two(x: int) -> int:
    return x * 2


@op
def add(a: int, b: int) -> int:
    return a + b


@job
def chain():
    add_one.alias("c")(add_one.alias("b")(one.alias("a")()))


@job
def diamond():
    top = one()
    add(add_one(top), times_two(top))


# -- nested graphs ------------------------------------------------------------------


@graph
def inc_twice(x):
    return add_one.alias("second")(add_one.alias("first")(x))


@graph
def outer(x):
    return inc_twice.alias("inner")(x)


@job
def nested():
    start = one()
    times_two(outer(inc_twice(start)))


# -- wide fan-out / fan-in ----------------------------------------------------------

WIDTH = 16


@op
def total(values: list[int]) -> int:
    return sum(values)


@job
def wide():
    start = one()
    total([add_one.alias(f"branch_{i}")(start) for i in range(WIDTH)])


# -- dynamic mapping ----------------------------------------------------------------

ITEMS = 100


@op(out=DynamicOut(int))
def items():
    for i in range(ITEMS):
        yield DynamicOutput(i, mapping_key=f"i{i}")


@op
def square(x: int) -> int:
    return x * x


@job
def dynamic():
    total(items().map(square).collect())


# -- multiple and optional outputs ---------------------------------------------------


@op(out={"small": Out(int), "big": Out(int, is_required=False)})
def split(x: int):
    yield Output(x, "small", metadata={"kind": "small"})
    if x > 100:
        yield Output(x, "big")


@op
def on_big(x: int) -> int:
    return x


@job
def optional():
    small, big = split(one())
    add_one(small)
    on_big(big)


# -- config and resources -----------------------------------------------------------


class ScaleConfig(Config):
    factor: int


class Offset(ConfigurableResource):
    amount: int = 0


@op
def scaled(x: int, config: ScaleConfig, offset: Offset) -> int:
    return x * config.factor + offset.amount


@job(resources={"offset": Offset()})
def configured():
    scaled(one())


# -- failures ---------------------------------------------------------------------


@op
def wrong_type() -> int:
    return "not an int"  # type: ignore[return-value]


@job
def type_failure():
    add_one(wrong_type())


@op
def fails() -> int:
    raise Failure("the source is empty", metadata={"rows": 0}, allow_retries=False)


@job
def failure():
    add_one(fails())


@op(retry_policy=RetryPolicy(max_retries=3, delay=0.01, backoff=Backoff.EXPONENTIAL, jitter=Jitter.FULL))
def flaky(context, config: StateConfig) -> int:
    attempt = _bump(config.state_dir, "flaky")
    if attempt < 3:
        raise RuntimeError(f"transient failure {attempt}")
    context.log.info("succeeded on retry %d", context.retry_number)
    return attempt


@job
def retries():
    add_one(flaky())


@op(timeout=1.0)
def slow() -> int:
    threading.Event().wait(4)  # never set: the coordinator times the step out after 1 s
    return 0


@job
def timeout():
    add_one(slow())


# -- re-execution from failure --------------------------------------------------------


@op
def counted_source(config: StateConfig) -> int:
    _bump(config.state_dir, "counted_source")
    return 10


@op
def fail_until_fixed(x: int, config: StateConfig) -> int:
    if not os.path.exists(os.path.join(config.state_dir, "fixed")):
        raise RuntimeError("not fixed yet")
    return x + 1


@job
def reexecution():
    add_one(fail_until_fixed(counted_source()))
