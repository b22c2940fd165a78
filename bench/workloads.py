"""The benchmark workloads, shared by every bench script: trivial ops, so that what is
measured is plait's per-step overhead, not the ops' work; a CPU-bound op; and 100 MB passed
from one step to the next."""

from __future__ import annotations

import random
import time

from plait import JobDefinition, job, op

CHAIN_LENGTH = 50
FAN_WIDTH = 64


@op
def start() -> int:
    return 0


@op
def inc(x: int) -> int:
    return x + 1


@op
def gather(xs: list[int]) -> int:
    return sum(xs)


def make_chain(n: int = CHAIN_LENGTH) -> JobDefinition:
    @job(name=f"chain_{n}")
    def chain():
        value = start()
        for i in range(n - 1):
            value = inc.alias(f"inc_{i}")(value)

    return chain


def make_fan(width: int = FAN_WIDTH) -> JobDefinition:
    @job(name=f"fan_{width}")
    def fan():
        root = start()
        gather([inc.alias(f"branch_{i}")(root) for i in range(width)])

    return fan


@op
def burn_cpu(seconds: float = 1.0) -> float:
    """Busy-loop for about ``seconds`` of CPU time (pure Python, holds the GIL)."""
    deadline = time.process_time() + seconds
    x = 0.0
    while time.process_time() < deadline:
        x += 1.0
    return x


def make_cpu(n: int = 4) -> JobDefinition:
    @job(name=f"cpu_{n}")
    def cpu():
        for i in range(n):
            burn_cpu.alias(f"burn_{i}")()

    return cpu


DATA_MB = 100


def make_payload(size: int) -> bytes:
    """``size`` bytes: a random 1 MiB block repeated, which costs milliseconds to make and
    does not shrink under the compressors engines use (their windows are far smaller)."""
    block = random.Random(0).randbytes(2**20)
    count, rest = divmod(size, len(block))
    return block * count + block[:rest]


@op
def produce_bytes() -> bytes:
    return make_payload(DATA_MB * 2**20)


@op
def count_bytes(data: bytes) -> int:
    return len(data)


def make_data() -> JobDefinition:
    @job(name=f"data_{DATA_MB}mb")
    def data():
        count_bytes(produce_bytes())

    return data


# One instance of each job at module level, so that other processes can import it by code
# pointer (``workloads:chain_job``): the Celery executor sends pointers, never pickles.
chain_job = make_chain()
fan_job = make_fan()
cpu_job = make_cpu()
data_job = make_data()


def step_count(job_def: JobDefinition) -> int:
    return len(job_def.nodes)


def timed(fn, repeat: int = 5) -> float:
    """Best wall time of ``repeat`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
