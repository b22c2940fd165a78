"""Per-step overhead of the in-process executor, and `import plait` time.

    uv run python bench/overhead.py

Overhead per step = best wall time of a run / number of steps, for trivial ops, so it is
all plait: planning, events, type checks, IO. Two set-ups:
- memory: Instance.ephemeral() (in-memory events, MemoryIOManager outputs);
- files:  a persistent Instance (SQLite event log, outputs as files via FsspecIOManager).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from plait import Instance  # noqa: E402
from workloads import make_chain, make_fan, step_count, timed  # noqa: E402

TARGETS = {"memory": 0.3, "files": 2.0}  # ms per step (Dagster 1.13: 5.3 and 25 ms)


def import_time(repeat: int = 7) -> tuple[float, float]:
    def run(code: str) -> float:
        out = subprocess.run(
            [sys.executable, "-c", f"import time; t=time.perf_counter(); {code}; print(time.perf_counter()-t)"],
            check=True, capture_output=True, text=True,
        )
        return float(out.stdout)

    plait = statistics.median(run("import plait") for _ in range(repeat))
    return plait * 1000, 0.0


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for setup in ("memory", "files"):
            for job_def in (make_chain(), make_fan()):
                def run(job_def=job_def, setup=setup):
                    instance = Instance.ephemeral() if setup == "memory" else Instance(Path(tmp) / "home")
                    job_def.execute(instance=instance)

                run()  # warm up
                best = timed(run, repeat=7)
                per_step = best / step_count(job_def) * 1000
                rows.append((job_def.name, setup, step_count(job_def), best * 1000, per_step, TARGETS[setup]))
    print(f"{'workload':<10} {'outputs':<7} {'steps':>5} {'wall ms':>9} {'ms/step':>8} {'target':>7}")
    for name, setup, steps, wall, per_step, target in rows:
        flag = "ok" if per_step < target else "SLOW"
        print(f"{name:<10} {setup:<7} {steps:>5} {wall:>9.1f} {per_step:>8.3f} {target:>6.1f}  {flag}")
    ms, _ = import_time()
    print(f"\nimport plait: {ms:.0f} ms (target < 150 ms; import dagster: 690 ms)")


if __name__ == "__main__":
    main()
