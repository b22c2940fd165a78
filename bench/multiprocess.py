"""The multiprocess executor against a bare ``concurrent.futures.ProcessPoolExecutor``.

The workloads of ``workloads.py``, on 2 worker processes (``--workers``), best of
``--repeat`` runs, pool start excluded (printed on its own line):

- ``chain``: 50 trivial ops, each taking the previous one's output (no parallelism);
- ``fan``: one op fanned out to 64 trivial ops and one op collecting them (66 steps);
- ``cpu``: 4 independent ops that each burn 1 s of CPU time (pure Python, GIL held).

Overhead per step = (best wall - pure op time) / steps, where the pure op time is what
the op bodies cost, divided by the workers they can use at once (for ``cpu``: 4 x 1 s / 2).
For plait it is everything a step costs: the coordinator, events written to SQLite, each
output stored and loaded again as a file by the FsspecIOManager. The ``in_process`` rows
show how much of that is plait's core rather than the process hop (and, for ``cpu``, the
serial time). The bare pool passes values through its pipes and stores nothing.

    uv run python bench/multiprocess.py [--repeat 5] [--workers 2] [--start-method spawn]

Targets (issue 5): under 3 ms overhead per step on chain and fan; the 4 CPU-bound steps
in at most 2.3 s on 2 cores (the bare pool: 2.0 s).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from plait import Instance, JobDefinition  # noqa: E402
from plait.executors.multiprocess import MultiprocessExecutor  # noqa: E402
from workloads import CHAIN_LENGTH, FAN_WIDTH, make_chain, make_cpu, make_fan  # noqa: E402

CPU_STEPS = 4


# ---- the same work for the bare pool --------------------------------------------------


def trivial(x: int) -> int:
    return x + 1


def burn(seconds: float = 1.0) -> float:
    """The body of ``workloads.burn_cpu``: about ``seconds`` of CPU time, holding the GIL."""
    deadline = time.process_time() + seconds
    x = 0.0
    while time.process_time() < deadline:
        x += 1.0
    return x


def _timed(fn: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


# ---- the bare pool -------------------------------------------------------------------------


def pool_chain(pool: ProcessPoolExecutor) -> None:
    value = pool.submit(trivial, -1).result()
    for _ in range(CHAIN_LENGTH - 1):
        value = pool.submit(trivial, value).result()


def pool_fan(pool: ProcessPoolExecutor) -> None:
    root = pool.submit(trivial, -1).result()
    leaves = [pool.submit(trivial, root) for _ in range(FAN_WIDTH)]
    wait(leaves)
    pool.submit(sum, [f.result() for f in leaves]).result()


def pool_cpu(pool: ProcessPoolExecutor) -> None:
    wait([pool.submit(burn, 1.0) for _ in range(CPU_STEPS)])


# ---- measuring ----------------------------------------------------------------------------


@dataclass
class Row:
    workload: str
    runner: str
    steps: int
    walls: list[float]
    pure: float

    @property
    def best(self) -> float:
        return min(self.walls)

    def overhead_ms(self) -> float:
        return (self.best - self.pure) / self.steps * 1000


def interleaved(repeat: int, runners: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Wall times of each runner, taking turns, so that a change in the machine's load
    (other processes) hits every runner alike."""
    walls: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeat):
        for name, fn in runners.items():
            walls[name].append(_timed(fn))
    return walls


def run_plait(job_def: JobDefinition, executor: object, home: str) -> Callable[[], None]:
    instance = Instance(home)

    def once() -> None:
        result = job_def.execute(instance=instance, executor=executor)
        assert result.success

    return once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--start-method", default="spawn", choices=["spawn", "forkserver", "fork"])
    parser.add_argument("--skip-cpu", action="store_true", help="only the overhead workloads")
    args = parser.parse_args()
    workers, repeat = args.workers, args.repeat
    cpu_repeat = max(1, repeat // 2)

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} at start, {workers} workers, start method "
          f"{args.start_method!r}, best of {repeat} (cpu: best of {cpu_repeat}), runners "
          "taking turns")
    trivial_cost = min(_timed(trivial, 1) for _ in range(1000))
    home = tempfile.mkdtemp(prefix="plait-bench-mp-")
    chain, fan, cpu = make_chain(CHAIN_LENGTH), make_fan(FAN_WIDTH), make_cpu(CPU_STEPS)
    steps = {"chain": CHAIN_LENGTH, "fan": FAN_WIDTH + 2, "cpu": CPU_STEPS}
    # what the op bodies cost, with the parallelism each runner can use
    pure = {
        "chain": {"parallel": CHAIN_LENGTH * trivial_cost, "serial": CHAIN_LENGTH * trivial_cost},
        "fan": {"parallel": (FAN_WIDTH / workers + 2) * trivial_cost,
                "serial": (FAN_WIDTH + 2) * trivial_cost},
        "cpu": {"parallel": CPU_STEPS * 1.0 / workers, "serial": CPU_STEPS * 1.0},
    }

    started = time.perf_counter()
    executor = MultiprocessExecutor(max_concurrent=workers, start_method=args.start_method)
    executor.__enter__()
    plait_start = time.perf_counter() - started
    started = time.perf_counter()
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(args.start_method))
    wait([pool.submit(trivial, 0) for _ in range(workers * 4)])
    pool_start = time.perf_counter() - started

    rows: list[Row] = []
    try:
        for name, job_def, pool_fn in (("chain", chain, pool_chain), ("fan", fan, pool_fan),
                                       ("cpu", cpu, pool_cpu)):
            if name == "cpu" and args.skip_cpu:
                continue
            runners = {
                "plait multiprocess": run_plait(job_def, executor, home),
                "plait in_process": run_plait(job_def, "in_process", home),
                "ProcessPoolExecutor": lambda fn=pool_fn: fn(pool),
            }
            if name == "cpu":
                runners.pop("plait in_process")  # 4 s a run; its time is the serial time
            else:
                for fn in runners.values():
                    fn()  # the first run of a job loads it in the workers; later runs reuse it
            walls = interleaved(cpu_repeat if name == "cpu" else repeat, runners)
            for runner, times in walls.items():
                kind = "serial" if runner == "plait in_process" else "parallel"
                rows.append(Row(name, runner, steps[name], times, pure[name][kind]))
    finally:
        executor.__exit__(None, None, None)
        pool.shutdown()

    print(f"pool start, until all {workers} workers are ready (not in the table): "
          f"plait {plait_start:.2f} s, ProcessPoolExecutor {pool_start:.2f} s")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}\n")
    header = (f"{'workload':<8} {'runner':<20} {'steps':>5} {'best s':>7} {'median s':>8} "
              f"{'overhead ms/step':>16}  notes")
    print(header)
    print("-" * (len(header) + 24))
    for row in rows:
        notes = ""
        if row.workload == "cpu":
            notes = f"serial {CPU_STEPS * 1.0:.1f} s -> x{CPU_STEPS * 1.0 / row.best:.2f}"
        print(f"{row.workload:<8} {row.runner:<20} {row.steps:>5} {row.best:>7.3f} "
              f"{statistics.median(row.walls):>8.3f} {row.overhead_ms():>16.2f}  {notes}")


if __name__ == "__main__":
    main()
