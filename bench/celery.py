"""plait on Celery against raw Celery, on the same broker and workers (run by hand).

Starts its own redis-server on a free loopback port and two ``plait celery worker``
processes (concurrency 1 each, so "2 worker processes"), then times, median of
``--repeat`` interleaved rounds:

- a 50-op chain: plait job (each op adds one to its input, outputs stored by the default
  FsspecIOManager under an ``Instance`` in a temp dir) against 50 raw Celery tasks
  chained by waiting on each result (``AsyncResult.get``);
- a 64-way fan-out: plait ``DynamicOut`` -> 64 mapped ops -> collect, against 64 raw
  tasks sent at once, then their results gathered;
- 4 CPU-bound 1-second steps on the 2 worker processes (ideal: 2 s).

Targets: per-step overhead within 1.5x of raw Celery; far ahead of dagster-celery
(51.5 s for the 50-op chain, about 1 s per step); the 4 CPU-bound steps in <= 2.3 s.
A chain or fan-out round takes about 0.1 s, so one noisy moment on a shared machine moves
its ratio: the table also gives the median of the per-round ratios (each round times raw
and plait back to back), and ``--repeat 20 --cases chain,fanout`` measures those two
closely without the 4 s CPU rounds. ``--workdir`` puts the stored outputs elsewhere than
the system temp dir (where creating a file can be slow, which only plait pays)::

    uv run python bench/celery.py [--repeat 5] [--cases chain,fanout,cpu] [--workdir DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

# this file is named celery.py: keep its folder off sys.path, or `import celery` finds it
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    from celery import Celery

CHAIN = 50
FANOUT = 64
CPU_STEPS = 4
CPU_SECONDS = 1.0
DAGSTER_CELERY_CHAIN_S = 51.5

JOBS = f'''
import time
from plait import DynamicOut, DynamicOutput, job, op

@op
def start() -> int:
    return 0

@op
def inc(x: int) -> int:
    return x + 1

@job
def chain():
    x = start()
    for i in range({CHAIN} - 1):
        x = inc.alias(f"inc_{{i}}")(x)

@op(out=DynamicOut(int))
def split():
    for i in range({FANOUT}):
        yield DynamicOutput(i, mapping_key=str(i))

@op
def total(xs: list[int]) -> int:
    return sum(xs)

@job
def fanout():
    total(split().map(inc).collect())

@op
def burn() -> int:
    end = time.perf_counter() + {CPU_SECONDS}
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n

@job
def cpu():
    for i in range({CPU_STEPS}):
        burn.alias(f"burn_{{i}}")()
'''

RAW_TASKS = f'''
import time
from celery import shared_task

@shared_task(name="bench.inc")
def inc(x):
    return x + 1

@shared_task(name="bench.total")
def total(xs):
    return sum(xs)

@shared_task(name="bench.burn")
def burn():
    end = time.perf_counter() + {CPU_SECONDS}
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        import redis

        client = redis.Redis(port=port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # startup of a service, not a result
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def workers(broker: str, backend: str, queue: str, workdir: Path, count: int = 2
            ) -> Iterator[list[subprocess.Popen[str]]]:
    plait = Path(sys.executable).with_name("plait")
    command = [str(plait), "celery", "worker"] if plait.exists() else \
        [sys.executable, "-m", "plait_celery.worker"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(workdir), os.environ.get("PYTHONPATH", "")) if p)}
    procs: list[subprocess.Popen[str]] = []
    ready = [threading.Event() for _ in range(count)]

    def pump(proc: subprocess.Popen[str], event: threading.Event) -> None:
        assert proc.stdout is not None
        with open(workdir / f"worker-{proc.pid}.log", "w") as log:
            for line in proc.stdout:
                log.write(line)
                if "plait celery worker ready" in line:
                    event.set()
        event.set()

    try:
        for i in range(count):
            proc = subprocess.Popen(
                [*command, "--broker", broker, "--backend", backend, "-Q", queue,
                 "--concurrency", "1", "-n", f"bench{i}@{socket.gethostname()}",
                 "--loglevel", "WARNING", "-I", "plait_bench_raw"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            procs.append(proc)
            threading.Thread(target=pump, args=(proc, ready[i]), daemon=True).start()
        for event, proc in zip(ready, procs, strict=True):
            if not event.wait(60) or proc.poll() is not None:
                raise RuntimeError(f"worker {proc.pid} did not start; see {workdir}")
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


# ---- raw Celery, on the tasks of RAW_TASKS (also used by bench/run.py) ------------------


def raw_chain_of(app: Celery, queue: str) -> None:
    """A 50-task chain, each task sent once the previous result is back."""
    x = -1
    for _ in range(CHAIN):
        x = app.send_task("bench.inc", args=[x], queue=queue).get(timeout=60)
    assert x == CHAIN - 1


def raw_fanout_of(app: Celery, queue: str) -> None:
    """The same shape as the plait job: one task, 64 at once, one that sums."""
    app.send_task("bench.inc", args=[0], queue=queue).get(timeout=60)
    results = [app.send_task("bench.inc", args=[i], queue=queue) for i in range(FANOUT)]
    xs = [r.get(timeout=60) for r in results]
    got = app.send_task("bench.total", args=[xs], queue=queue).get(timeout=60)
    assert got == sum(range(1, FANOUT + 1))


def raw_cpu_of(app: Celery, queue: str) -> None:
    results = [app.send_task("bench.burn", queue=queue) for _ in range(CPU_STEPS)]
    for result in results:
        result.get(timeout=60)


def measure(repeat: int, cases: dict[str, Callable[[], None]]) -> dict[str, list[float]]:
    """Seconds per case for each round, the cases interleaved round by round so that
    load from other processes hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, case in cases.items():
            started = time.perf_counter()
            case()
            times[name].append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cases", default="chain,fanout,cpu",
                        help="comma-separated workloads to time (chain, fanout, cpu)")
    parser.add_argument("--workdir", default=None,
                        help="where the Redis files, job modules and plait's stored outputs go "
                             "(default: the system temp dir). plait stores every output as a "
                             "file and raw Celery stores none, so a slow temp dir weighs on "
                             "plait's ratio alone")
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - {"chain", "fanout", "cpu"}
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; choose from chain, fanout, cpu")

    workdir = Path(tempfile.mkdtemp(prefix="plait-bench-celery-", dir=args.workdir))
    (workdir / "plait_bench_jobs.py").write_text(textwrap.dedent(JOBS))
    (workdir / "plait_bench_raw.py").write_text(textwrap.dedent(RAW_TASKS))
    sys.path.insert(0, str(workdir))

    from plait import Instance
    from plait_bench_jobs import chain, cpu, fanout
    from plait_celery import CeleryExecutor, make_app
    from plait_celery.config import CeleryConfig

    queue = "bench"
    try:
        with redis_server(workdir) as url, \
                workers(f"{url}/0", f"{url}/1", queue, workdir) as _procs:
            config = {"broker": f"{url}/0", "backend": f"{url}/1", "queue": queue}
            raw = make_app(CeleryConfig(**config))
            instance = Instance(workdir / "home")

            def raw_chain() -> None:
                raw_chain_of(raw, queue)

            def raw_fanout() -> None:
                raw_fanout_of(raw, queue)

            def raw_cpu() -> None:
                raw_cpu_of(raw, queue)

            with CeleryExecutor(config) as executor:
                def plait_chain() -> None:
                    result = chain.execute(executor=executor, instance=instance)
                    assert result.output_for(f"inc_{CHAIN - 2}") == CHAIN - 1

                def plait_fanout() -> None:
                    result = fanout.execute(executor=executor, instance=instance)
                    assert result.output_for("total") == sum(range(1, FANOUT + 1))

                def plait_cpu() -> None:
                    cpu.execute(executor=executor, instance=instance)

                measure(1, {"warm-up": lambda: (plait_chain(), raw_chain())})
                runs = {"raw chain": raw_chain, "plait chain": plait_chain,
                        "raw fanout": raw_fanout, "plait fanout": plait_fanout,
                        "raw cpu": raw_cpu, "plait cpu": plait_cpu}
                times = measure(args.repeat, {name: run for name, run in runs.items()
                                              if name.split()[1] in cases})
            raw.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    report(times, args.repeat, cases, str(workdir.parent))


def report(times: dict[str, list[float]], repeat: int, cases: list[str], where: str) -> None:
    med = {name: statistics.median(values) for name, values in times.items()}
    best = {name: min(values) for name, values in times.items()}
    steps = {"chain": CHAIN, "fanout": FANOUT + 2, "cpu": CPU_STEPS}
    print(f"\nplait on Celery vs raw Celery (2 workers x concurrency 1, median of {repeat}, "
          f"load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, outputs in {where})\n")
    print(f"{'workload':<26}{'raw celery':>12}{'plait':>12}{'ratio':>8}{'round ratio':>13}"
          f"{'raw ms/step':>13}{'plait ms/step':>15}")
    for case, label in (("chain", f"{CHAIN}-op chain"), ("fanout", f"{FANOUT}-way fan-out"),
                        ("cpu", f"{CPU_STEPS} x {CPU_SECONDS:g}s CPU steps")):
        if case not in cases:
            continue
        r, p = med[f"raw {case}"], med[f"plait {case}"]
        paired = statistics.median(
            b / a for a, b in zip(times[f"raw {case}"], times[f"plait {case}"], strict=True))
        print(f"{label:<26}{r:>11.3f}s{p:>11.3f}s{p / r:>7.2f}x{paired:>12.2f}x"
              f"{r / steps[case] * 1000:>13.1f}{p / steps[case] * 1000:>15.1f}")
    print(f"\nbest of {repeat}: " + ", ".join(f"{k} {v:.3f}s" for k, v in best.items()))
    cpu = f" (plait: {med['plait cpu']:.2f} s)" if "cpu" in cases else ""
    print(f"targets: chain and fan-out within 1.5x of raw Celery; 50-op chain far below "
          f"dagster-celery's {DAGSTER_CELERY_CHAIN_S} s; {CPU_STEPS} CPU steps <= 2.3 s{cpu}")


if __name__ == "__main__":
    main()
