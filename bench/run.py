"""Every executor side by side, on the same workloads, next to the raw engines (issue 8).

    uv run python bench/run.py [--only dask,celery] [--workloads chain,fan] [--repeat 7] [--quick]
    ./dev bench

Workloads (``workloads.py``): ``chain``, 50 trivial ops each taking the previous output;
``fan``, one op fanned out to 64 trivial ops and one collecting them (66 steps); ``cpu``,
4 independent ops each burning 1 s of CPU time (pure Python, GIL held); ``data``, one op
returning 100 MB of ``bytes`` and one taking them.

Runners, one group of engines at a time, each started once and stopped after its group
(also on Ctrl-C or an error), 2 workers wherever there are workers:

- ``in_process``: plain Python calls; plait ``in_process`` with an ephemeral ``Instance``
  (memory) and with a persistent one (SQLite events, outputs as files);
- ``multiprocess``: ``concurrent.futures.ProcessPoolExecutor(2)``; plait ``multiprocess``;
- ``dask`` (a 2-worker ``LocalCluster``): raw ``client.submit`` (the whole graph at once,
  and for ``chain`` also step by step); plait ``dask``;
- ``celery`` (a throwaway redis-server on a free loopback port, 2 ``plait celery worker``
  processes of concurrency 1): raw Celery tasks on the same broker and workers; plait
  ``celery``.

plait runs use the group's one started executor, and (but for ``in_process (memory)``) a
persistent ``Instance`` in a temp dir. The runners of a group take turns, round after round,
so that load from other processes hits them alike; each figure is the best of ``--repeat``
rounds (default 7; ``cpu`` and ``data``: half as many, rounded up), after one untimed run
for ``chain`` and ``fan`` (a job's first run loads it in each worker). ms/step = best wall
/ steps (the ops themselves cost microseconds); speedup = 4 s (the CPU time of the 4 steps)
/ best wall; "x raw" = best wall / the raw engine's best wall. A group whose engine is not
installed is skipped with a note. Results also go to ``bench/results/latest.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds dask.py and celery.py, which would shadow the packages in every process with
# bench/ on its path: the modules workers import are linked into a temp dir instead, those
# two as bench_dask.py and bench_celery.py.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from concurrent.futures import Future, ProcessPoolExecutor, wait  # noqa: E402
from contextlib import ExitStack, contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

WORKERS = 2
WORKLOADS = ("chain", "fan", "cpu", "data")
GROUPS = ("in_process", "multiprocess", "dask", "celery")
WARMED = {"chain", "fan"}  # cpu and data runs are long: a job's first load is lost in them
CPU_SERIAL_S = 4.0  # 4 steps x 1 s of CPU time
# the bench modules every worker may import, as they are named there (link -> bench file)
LINKED = {"workloads.py": "workloads.py", "multiprocess.py": "multiprocess.py",
          "bench_dask.py": "dask.py", "bench_celery.py": "celery.py"}
RESULTS = BENCH / "results" / "latest.json"

# raw Celery tasks beyond bench/celery.py's: JSON carries no bytes, so the 100 MB go as text
RAW_TASKS_EXTRA = '''
import multiprocess
import workloads


@shared_task(name="bench.burn_cpu")
def burn_cpu(seconds):
    return multiprocess.burn(seconds)


@shared_task(name="bench.payload_text")
def payload_text(size):
    return workloads.make_payload(2**19).hex() * (size // 2**20)


@shared_task(name="bench.text_length")
def text_length(text):
    return len(text)
'''


class Unavailable(Exception):
    """The group's engine is not installed here: its runners are skipped."""


@dataclass
class Runner:
    name: str
    runs: dict[str, Callable[[], object]]  # workload -> one run
    baseline: str | None = None  # the raw engine it is compared with ("x raw")
    also: tuple[str, ...] = ()  # other runners it is compared with, in a note


@dataclass
class Env:
    """What every group shares: the scratch dir (on every worker's path), the bench
    modules, and the engines' start times (reported apart from the table)."""

    root: Path
    w: ModuleType  # workloads.py
    mp: ModuleType  # multiprocess.py
    started: dict[str, float] = field(default_factory=dict)

    @property
    def payload_size(self) -> int:
        return self.w.DATA_MB * 2**20

    def instance(self, stack: ExitStack, name: str) -> Any:
        from plait import Instance

        instance = Instance(self.root / "homes" / name)
        stack.callback(instance.close)
        return instance

    def plait_runs(self, executor: object, instance: Any) -> dict[str, Callable[[], object]]:
        jobs = {"chain": self.w.chain_job, "fan": self.w.fan_job, "cpu": self.w.cpu_job,
                "data": self.w.data_job}
        # execute() raises when a run fails: a failed run is never timed as a fast one
        return {name: lambda job=job: job.execute(instance=instance, executor=executor)
                for name, job in jobs.items()}

    def pool_runs(self, pool: Any) -> dict[str, Callable[[], object]]:
        """The workloads on anything with ``submit(fn, *args) -> Future``."""
        size = self.payload_size

        def data() -> None:
            payload = pool.submit(self.w.make_payload, size).result()
            assert pool.submit(len, payload).result() == size

        return {"chain": lambda: self.mp.pool_chain(pool), "fan": lambda: self.mp.pool_fan(pool),
                "cpu": lambda: self.mp.pool_cpu(pool), "data": data}


class Inline:
    """``submit`` that calls the function at once: multiprocess.py's pool workloads as
    plain calls (a done Future adds about a microsecond per call)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future


def timed_start(env: Env, what: str) -> Callable[[], None]:
    started = time.perf_counter()
    return lambda: env.started.__setitem__(what, time.perf_counter() - started)


# ---- the groups: each starts its engines, yields its runners, stops everything -----------


@contextmanager
def in_process_group(env: Env) -> Iterator[list[Runner]]:
    from plait import Instance

    with ExitStack() as stack:
        memory = Instance.ephemeral()
        stack.callback(memory.close)
        yield [
            Runner("python (plain calls)", env.pool_runs(Inline())),
            Runner("in_process (memory)", env.plait_runs("in_process", memory)),
            Runner("in_process (files)", env.plait_runs("in_process", env.instance(stack, "ip"))),
        ]


@contextmanager
def multiprocess_group(env: Env) -> Iterator[list[Runner]]:
    from plait.executors.multiprocess import MultiprocessExecutor

    with ExitStack() as stack:
        done = timed_start(env, "ProcessPoolExecutor(2), until both workers ran a task")
        pool = stack.enter_context(ProcessPoolExecutor(
            WORKERS, mp_context=multiprocessing.get_context("spawn")))
        wait([pool.submit(env.mp.trivial, 0) for _ in range(WORKERS * 4)])
        done()
        done = timed_start(env, "plait multiprocess, until both workers are ready")
        executor = stack.enter_context(MultiprocessExecutor(max_concurrent=WORKERS))
        done()
        yield [
            Runner("ProcessPoolExecutor(2)", env.pool_runs(pool)),
            Runner("multiprocess", env.plait_runs(executor, env.instance(stack, "mp")),
                   baseline="ProcessPoolExecutor(2)"),
        ]


@contextmanager
def dask_group(env: Env) -> Iterator[list[Runner]]:
    try:
        import bench_dask  # bench/dask.py, which imports plait_dask
        from distributed import Client
    except ImportError as exc:
        raise Unavailable(f"{exc} (install plait-dask)") from exc
    w, mp, size = env.w, env.mp, env.payload_size

    with ExitStack() as stack:
        done = timed_start(env, "Dask LocalCluster (2 worker processes) + client")
        cluster = stack.enter_context(bench_dask.local_cluster(WORKERS))
        client = stack.enter_context(Client(cluster, set_as_default=False))
        client.wait_for_workers(WORKERS, timeout=60)
        done()
        done = timed_start(env, "plait dask executor, connecting to the cluster")
        executor = stack.enter_context(bench_dask.DaskExecutor(address=cluster.scheduler_address))
        done()

        def raw_cpu() -> None:
            client.gather([client.submit(mp.burn, 1.0, pure=False) for _ in range(4)])

        def raw_data() -> None:
            payload = client.submit(w.make_payload, size, pure=False)
            assert client.submit(len, payload, pure=False).result() == size

        yield [
            Runner("raw dask", {"chain": lambda: bench_dask.raw_chain(client),
                                "fan": lambda: bench_dask.raw_fanout(client),
                                "cpu": raw_cpu, "data": raw_data}),
            Runner("raw dask (stepwise)",
                   {"chain": lambda: bench_dask.raw_chain_stepwise(client)}),
            Runner("dask", env.plait_runs(executor, env.instance(stack, "dask")),
                   baseline="raw dask", also=("raw dask (stepwise)",)),
        ]


@contextmanager
def celery_group(env: Env) -> Iterator[list[Runner]]:
    if shutil.which("redis-server") is None:
        raise Unavailable("redis-server is not on PATH (apt-get install redis-server)")
    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
        from plait_celery import CeleryConfig, CeleryExecutor, make_app
    except ImportError as exc:
        raise Unavailable(f"{exc} (install plait-celery)") from exc
    import bench_celery  # bench/celery.py
    # workers import this with -I, and the job modules by code pointer, from env.root
    (env.root / "plait_bench_raw.py").write_text(bench_celery.RAW_TASKS + RAW_TASKS_EXTRA)
    queue, size = f"bench-{uuid.uuid4().hex[:8]}", env.payload_size

    with ExitStack() as stack:
        done = timed_start(env, "redis-server + 2 plait celery workers, until ready")
        url = stack.enter_context(bench_celery.redis_server(env.root))
        stack.enter_context(bench_celery.workers(f"{url}/0", f"{url}/1", queue, env.root))
        done()
        config = {"broker": f"{url}/0", "backend": f"{url}/1", "queue": queue}
        app = make_app(CeleryConfig(**config))
        stack.callback(app.close)
        done = timed_start(env, "plait celery executor, connecting to the broker")
        executor = stack.enter_context(CeleryExecutor(config))
        done()

        def raw_cpu() -> None:
            sent = [app.send_task("bench.burn_cpu", args=[1.0], queue=queue) for _ in range(4)]
            for result in sent:
                result.get(timeout=60)

        def raw_data() -> None:
            # a Celery chain: the worker sends the text on to the next task itself
            chain = (app.signature("bench.payload_text", args=[size], queue=queue)
                     | app.signature("bench.text_length", queue=queue))
            assert chain.apply_async().get(timeout=300) == size

        yield [
            Runner("raw celery", {"chain": lambda: bench_celery.raw_chain_of(app, queue),
                                  "fan": lambda: bench_celery.raw_fanout_of(app, queue),
                                  "cpu": raw_cpu, "data": raw_data}),
            Runner("celery", env.plait_runs(executor, env.instance(stack, "celery")),
                   baseline="raw celery"),
        ]


GROUP_STARTERS = {"in_process": in_process_group, "multiprocess": multiprocess_group,
                  "dask": dask_group, "celery": celery_group}


# ---- measuring ----------------------------------------------------------------------------


def measure_group(env: Env, runners: list[Runner], workloads: list[str], repeat: int,
                  heavy_repeat: int) -> list[dict[str, Any]]:
    steps = {"chain": env.w.step_count(env.w.chain_job), "fan": env.w.step_count(env.w.fan_job),
             "cpu": env.w.step_count(env.w.cpu_job), "data": env.w.step_count(env.w.data_job)}
    rows: list[dict[str, Any]] = []
    for workload in workloads:
        runs = {r.name: r.runs[workload] for r in runners if workload in r.runs}
        if workload in WARMED:
            for run in runs.values():
                run()
        walls = env.mp.interleaved(repeat if workload in WARMED else heavy_repeat, runs)
        best = {name: min(times) for name, times in walls.items()}
        for runner in runners:
            if runner.name not in walls:
                continue
            times = walls[runner.name]
            row: dict[str, Any] = {
                "workload": workload, "runner": runner.name, "steps": steps[workload],
                "best_s": best[runner.name], "median_s": statistics.median(times),
                "walls_s": times,
            }
            if workload in ("chain", "fan"):
                row["ms_per_step"] = best[runner.name] / steps[workload] * 1000
            if workload == "cpu":
                row["speedup"] = CPU_SERIAL_S / best[runner.name]
            if runner.baseline in best:
                row["baseline"] = runner.baseline
                row["x_raw"] = best[runner.name] / best[runner.baseline]
            row["x_also"] = {other: best[runner.name] / best[other]
                             for other in runner.also if other in best}
            rows.append(row)
        print(f"  {workload:<6}" + ", ".join(f"{n} {b:.3f} s" for n, b in best.items()),
              file=sys.stderr, flush=True)
    return rows


# ---- targets (issue 8) ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    runner: str
    workload: str
    metric: str  # a key of a result row
    limit: float
    text: str


def targets() -> list[Target]:
    per_step = {"in_process (memory)": ("ms_per_step", 0.3, "< 0.3 ms/step"),
                "in_process (files)": ("ms_per_step", 2.0, "< 2 ms/step"),
                "multiprocess": ("ms_per_step", 3.0, "< 3 ms/step"),
                "dask": ("x_raw", 1.5, "within 1.5x of raw Dask"),
                "celery": ("x_raw", 1.5, "within 1.5x of raw Celery")}
    t: list[Target] = []
    for runner, (metric, limit, text) in per_step.items():
        t += [Target(runner, workload, metric, limit, text) for workload in ("chain", "fan")]
        if runner in ("multiprocess", "dask", "celery"):
            t.append(Target(runner, "cpu", "best_s", 2.3, "<= 2.3 s"))
    return t


def check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = {(r["runner"], r["workload"]): r for r in rows}
    checked = []
    for target in targets():
        row = found.get((target.runner, target.workload))
        if row is None or target.metric not in row:
            continue
        value = row[target.metric]
        checked.append({"runner": target.runner, "workload": target.workload,
                        "metric": target.metric, "target": target.text, "limit": target.limit,
                        "measured": value, "met": value <= target.limit,
                        "over_by_pct": max(0.0, (value / target.limit - 1) * 100)})
    return checked


# ---- reporting ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpus": os.cpu_count()}
    with contextlib.suppress(AttributeError):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gb"] = round(int(line.split()[1]) / 2**20, 1)
    info.setdefault("cpu_model", platform.processor() or "unknown")
    return info


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def columns(labels: dict[str, str]) -> list[tuple[str, Callable[[dict], str]]]:
    """(header, cell) per column; a cell gets the runner's rows by workload."""

    def ratio(row: dict[str, Any]) -> str:
        return f" ({row['x_raw']:.2f}x raw)" if "x_raw" in row else ""

    def cell(workload: str, render: Callable[[dict[str, Any]], str]) -> Callable[[dict], str]:
        return lambda rows: render(rows[workload]) if workload in rows else ""

    cols: list[tuple[str, Callable[[dict], str]]] = []
    for workload, name in labels.items():
        if workload in ("chain", "fan"):
            cols.append((f"{name} s", cell(workload, lambda r: f"{r['best_s']:.3f}")))
            cols.append((f"{name} ms/step",
                         cell(workload, lambda r: f"{r['ms_per_step']:.2f}{ratio(r)}")))
        elif workload == "cpu":
            cols.append((f"{name} s", cell(workload, lambda r: f"{r['best_s']:.2f}{ratio(r)}")))
            cols.append(("speedup", cell(workload, lambda r: f"{r['speedup']:.2f}x")))
        else:
            cols.append((f"{name} s", cell(workload, lambda r: f"{r['best_s']:.2f}{ratio(r)}")))
    return cols


def table(report: dict[str, Any], markdown: bool) -> str:
    by_runner: dict[str, dict[str, dict]] = {}
    for row in report["results"]:
        by_runner.setdefault(row["runner"], {})[row["workload"]] = row
    cols = columns(report["settings"]["labels"])
    header = ["runner", *(h for h, _ in cols)]
    body = [[name, *(render(rows) for _, render in cols)] for name, rows in by_runner.items()]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                         for i, c in enumerate(row))

    return "\n".join([fmt(header), "-" * len(fmt(header)), *(fmt(r) for r in body)])


def render(report: dict[str, Any], markdown: bool) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        f"plait bench/run.py, {report['date']}: {m['cpu_model']}, {m['cpus']} CPUs, "
        f"{m.get('ram_gb', '?')} GB RAM, Python {m['python']}",
        f"load average (1, 5, 15 min) {report['load_average']['start']} at start, "
        f"{report['load_average']['end']} at the end; best of {s['repeat']} "
        f"(cpu, data: best of {s['heavy_repeat']}), runners of a group taking turns",
        "",
        table(report, markdown),
        "",
        "ms/step = best wall / steps; speedup = 4 s of CPU time / best wall; "
        "x raw = best wall / the raw engine's best wall (dask: the whole graph submitted at once)",
    ]
    lines += [f"{r['runner']} {r['workload']}: {ratio:.2f}x {other}"
              for r in report["results"] for other, ratio in r.get("x_also", {}).items()]
    groups = report["load_average"].get("groups", {})
    lines.append("1-min load average during each group: " + ", ".join(
        f"{group} {' -> '.join(str(x) for x in values)}" for group, values in groups.items()))
    for group, reason in report["skipped"].items():
        lines.append(f"{group}: SKIPPED, {reason}")
    if report["engine_start_s"]:
        lines.append("engine start (not in the table): " + "; ".join(
            f"{what} {seconds:.2f} s" for what, seconds in report["engine_start_s"].items()))
    if report["targets"]:
        lines += ["", "targets (issue 8):"]
        for t in report["targets"]:
            unit = {"ms_per_step": " ms/step", "best_s": " s", "x_raw": "x raw"}[t["metric"]]
            over = t["over_by_pct"]
            status = "met" if t["met"] else f"MISSED by {over:.0f}%" if over >= 10 else \
                f"MISSED by {over:.1f}%"
            lines.append(f"  {t['runner']:<20} {t['workload']:<6} {t['target']:<26} "
                         f"{t['measured']:.2f}{unit}: {status}")
    return "\n".join(lines)


# ---- main -------------------------------------------------------------------------------------


def parse_list(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(allowed))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown) or '(none given)'}; expected a comma-separated "
            f"list of: {', '.join(allowed)}")
    return [v for v in allowed if v in chosen]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", type=lambda v: parse_list(v, GROUPS, "executor"),
                        default=list(GROUPS), metavar="EXECUTOR[,..]",
                        help=f"groups to run, of: {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--workloads", type=lambda v: parse_list(v, WORKLOADS, "workload"),
                        default=list(WORKLOADS), metavar="WORKLOAD[,..]",
                        help=f"of: {', '.join(WORKLOADS)} (default: all)")
    parser.add_argument("--repeat", type=int, default=7,
                        help="rounds per workload, best taken (cpu, data: half as many)")
    parser.add_argument("--quick", action="store_true", help="2 rounds (cpu, data: 1)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help="print the table of a saved run (e.g. bench/results/latest.json) "
                        "instead of running")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 2
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def prepare(root: Path) -> Env:
    """Link the bench modules workers import into ``root`` and put it on every path."""
    for link, name in LINKED.items():
        (root / link).symlink_to(BENCH / name)
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    import multiprocess as mp
    import workloads

    return Env(root, workloads, mp)


def leftover_children() -> list[str]:
    """Processes this one started that are still alive (there should be none)."""
    try:
        import psutil
    except ImportError:
        return []
    children = [p for p in psutil.Process().children(recursive=True)
                if not _is_resource_tracker(p)]
    _, alive = psutil.wait_procs(children, timeout=10)
    described = [f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in alive]
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    return described


def _is_resource_tracker(proc: Any) -> bool:
    """multiprocessing's resource tracker: it outlives the pools on purpose and exits with
    this process."""
    try:
        return "resource_tracker" in " ".join(proc.cmdline())
    except Exception:  # noqa: BLE001 - gone, or not ours to read
        return False


def watch_ctrl_c() -> threading.Event:
    """Ctrl-C reaches the engines' processes too (one process group): the error a dying
    redis-server or worker causes here may surface before the KeyboardInterrupt does. The
    event tells such an error from a real failure."""
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        interrupted.set()
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    return interrupted


def main() -> int:
    args = arguments()
    if args.from_json:
        print(render(json.loads(args.from_json.read_text()), args.markdown))
        return 0
    interrupted = watch_ctrl_c()
    heavy_repeat = max(1, (args.repeat + 1) // 2) if not args.quick else 1
    root = Path(tempfile.mkdtemp(prefix="plait-bench-run-"))
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
        "settings": {"groups": args.only, "workloads": args.workloads, "repeat": args.repeat,
                     "heavy_repeat": heavy_repeat, "workers": WORKERS},
        "load_average": {"start": load()}, "engine_start_s": {}, "skipped": {},
        "results": [],
    }
    failed = False
    try:
        env = prepare(root)
        report["engine_start_s"] = env.started
        report["settings"]["labels"] = {
            workload: label for workload, label in (
                ("chain", f"chain-{env.w.CHAIN_LENGTH}"), ("fan", f"fan-{env.w.FAN_WIDTH}"),
                ("cpu", "cpu 4x1s"), ("data", f"data {env.w.DATA_MB}MB"))
            if workload in args.workloads}
        for group in args.only:
            print(f"{group} (load average {load()[0]})", file=sys.stderr, flush=True)
            group_load = report["load_average"].setdefault("groups", {})[group] = [load()[0]]
            try:
                with GROUP_STARTERS[group](env) as runners:
                    report["results"] += measure_group(env, runners, args.workloads,
                                                       args.repeat, heavy_repeat)
                    group_load.append(load()[0])
            except Unavailable as exc:
                report["skipped"][group] = str(exc)
            except Exception as exc:  # noqa: BLE001 - one broken engine must not lose the rest
                if interrupted.is_set():
                    raise KeyboardInterrupt from exc
                traceback.print_exc()
                report["skipped"][group] = f"failed: {type(exc).__name__}: {exc}"
                failed = True
    except KeyboardInterrupt:
        print("\ninterrupted: every engine started was stopped; no results written",
              file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)
        left = leftover_children()
        if left:
            print(f"WARNING: processes left running, now killed: {left}", file=sys.stderr)
    report["load_average"]["end"] = load()
    report["targets"] = check_targets(report["results"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(render(report, args.markdown))
    print(f"\nsaved to {args.json}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
