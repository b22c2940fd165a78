"""Dask executor overhead: plait steps vs raw ``client.submit`` on the same cluster.

Run: ``uv run python bench/dask.py [--repeat 5]``. Prints one table:

- chain-50: 50 ops, each adding 1 to its input (plait: 50 steps through the coordinator,
  outputs stored on local disk; raw: a chain of 50 dependent ``client.submit`` calls).
- fanout-64: one op emits 64 items, 64 mapped steps add 1, one step sums them (plait:
  DynamicOut/map/collect; raw: 64 submits on one root future and a sum).
- cpu-4x1s: one small input feeding four ops that each burn 1 s of CPU, on 2 workers.
  Raw Dask runs them where their input lives (mostly one worker); plait passes handles,
  so the four steps spread over both workers.

Each case runs ``--repeat`` times on one LocalCluster (2 worker processes, 1 thread each);
the table shows the best and the median, and per-step times. "stepwise raw" is raw Dask
driven one step at a time (submit, wait for the result, submit the next): the floor of any
executor whose coordinator decides the next step from the last outcome.
Targets: plait within 1.5x of raw per step; cpu-4x1s under 2.3 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

# Run as a script, this file would shadow the `dask` package it measures.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from plait import DynamicOut, DynamicOutput, Instance, job, op  # noqa: E402
from plait_dask import DaskExecutor  # noqa: E402

if TYPE_CHECKING:
    from distributed import LocalCluster

CHAIN = 50
FANOUT = 64
CPU_STEPS = 4
CPU_SECONDS = 1.0


def inc(x: int) -> int:
    return x + 1


def burn(x: int, seconds: float = CPU_SECONDS) -> int:
    """Keep a worker's thread busy computing for ``seconds`` of wall time (not a sleep:
    the step holds the CPU; wall time keeps the case comparable on a loaded machine)."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return x + 1


# ---- plait jobs ---------------------------------------------------------------------


@op
def start() -> int:
    return 0


@op
def step(x: int) -> int:
    return x + 1


@job
def chain_job():
    value = start()
    for i in range(CHAIN - 1):
        value = step.alias(f"step_{i}")(value)


@op(out=DynamicOut(int))
def spread():
    for i in range(FANOUT):
        yield DynamicOutput(i, mapping_key=str(i))


@op
def add(xs: list[int]) -> int:
    return sum(xs)


@job
def fanout_job():
    add(spread().map(step).collect())


@op
def load() -> list[int]:
    return list(range(1000))


@op
def crunch(xs: list[int]) -> int:
    return burn(len(xs))


@job
def cpu_job():
    data = load()
    for i in range(CPU_STEPS):
        crunch.alias(f"crunch_{i}")(data)


# ---- raw Dask ---------------------------------------------------------------------------


def raw_chain(client) -> None:
    future = client.submit(inc, 0, pure=False)
    for _ in range(CHAIN - 1):
        future = client.submit(inc, future, pure=False)
    future.result()


def raw_chain_stepwise(client) -> None:
    """The floor of any coordinator-driven executor: submit, wait for the result, repeat."""
    value = 0
    for _ in range(CHAIN):
        value = client.submit(inc, value, pure=False).result()


def raw_fanout(client) -> None:
    root = client.submit(list, range(FANOUT), pure=False)
    items = [client.submit(lambda xs, i: xs[i] + 1, root, i, pure=False) for i in range(FANOUT)]
    client.submit(sum, items, pure=False).result()


def raw_cpu(client) -> None:
    data = client.submit(list, range(1000), pure=False)
    client.gather([client.submit(lambda xs: burn(len(xs)), data, pure=False) for _ in range(CPU_STEPS)])


def timed_pair(first: Callable[[], object], second: Callable[[], object],
               repeat: int) -> tuple[list[float], list[float]]:
    """Run the two alternately, so both see the same background load."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, into in ((first, times[0]), (second, times[1])):
            began = time.perf_counter()
            fn()
            into.append(time.perf_counter() - began)
    return times


def local_cluster(n_workers: int = 2) -> LocalCluster:
    """The cluster every case runs on: ``n_workers`` worker processes, 1 thread each, on
    127.0.0.1 (also used by ``bench/run.py``)."""
    from distributed import LocalCluster

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port 8787 is already in use")
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                            host="127.0.0.1", dashboard_address=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from distributed import Client

    cluster = local_cluster()
    home = Path(tempfile.mkdtemp(prefix="plait-bench-dask-"))
    instance = Instance(home)
    config = {"execution": {"dask": {"address": cluster.scheduler_address}}}
    rows = []
    with cluster, Client(cluster, set_as_default=False) as client, \
            DaskExecutor(address=cluster.scheduler_address) as kept:

        def plait_run(the_job, executor=None) -> Callable[[], object]:
            if executor is None:  # the usual way: each run connects its own client
                return lambda: the_job.execute(config, instance=instance)
            return lambda: the_job.execute(executor=executor, instance=instance)

        cases = [
            ("chain-50", CHAIN, plait_run(chain_job), lambda: raw_chain(client)),
            ("chain-50 (kept executor)", CHAIN, plait_run(chain_job, kept), lambda: raw_chain(client)),
            ("chain-50 vs stepwise raw", CHAIN, plait_run(chain_job, kept),
             lambda: raw_chain_stepwise(client)),
            ("fanout-64", FANOUT + 2, plait_run(fanout_job), lambda: raw_fanout(client)),
            ("cpu-4x1s", CPU_STEPS + 1, plait_run(cpu_job), lambda: raw_cpu(client)),
        ]
        for name, steps, plait_fn, raw_fn in cases:
            plait_fn()  # warm: worker imports, job cache
            raw_fn()
            plait_times, raw_times = timed_pair(plait_fn, raw_fn, args.repeat)
            rows.append((name, steps, plait_times, raw_times))

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average (1, 5, 15 min): {load} on {os.cpu_count()} CPUs\n")
    header = (f"{'case':<26} {'steps':>5} {'plait best':>11} {'plait med':>10} {'raw best':>9} "
              f"{'raw med':>8} {'plait/step':>11} {'raw/step':>9} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for name, steps, plait_times, raw_times in rows:
        pb, pm = min(plait_times), statistics.median(plait_times)
        rb, rm = min(raw_times), statistics.median(raw_times)
        print(f"{name:<26} {steps:>5} {pb:>10.3f}s {pm:>9.3f}s {rb:>8.3f}s {rm:>7.3f}s "
              f"{pm / steps * 1000:>9.1f}ms {rm / steps * 1000:>7.1f}ms {pm / rm:>6.2f}")
    print("\nratio = plait median / raw median (plait and raw runs alternate). Per-step columns divide a whole run (plait: "
          "with its run start/end,\nSQLite event log and output files) by its step count. "
          "'kept executor': runs share one started\nDaskExecutor instead of connecting a "
          "client per run. 'stepwise raw': raw Dask submitting each\nstep after the previous "
          "result, as any coordinator that decides step by step must.")


if __name__ == "__main__":
    main()
