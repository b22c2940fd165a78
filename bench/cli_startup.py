"""Start-up time of the ``plait`` command line (run by hand; prints a table).

Target: ``plait --help`` under 300 ms. Each command runs ``--repeat`` times as a fresh
subprocess (interleaved, after one warm-up round so the OS file cache is warm); the table
shows the median and the fastest run, next to the floors it cannot beat: the bare
interpreter, click (every click CLI pays it), and ``import plait`` (the package the
``plait.cli`` module lives in, whose ``__init__`` runs first). ``plait --help`` also
imports every installed plugin's command module (``plait.cli`` entry points); the last
row shows the same help with plugins switched off, i.e. what plait's own code costs.

    uv run python bench/cli_startup.py [--repeat 21]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 300.0


def commands() -> list[tuple[str, list[str]]]:
    python = sys.executable
    script = Path(python).parent / "plait"
    plait = [str(script)] if script.exists() else [python, "-m", "plait.cli"]
    return [
        ("python -c pass", [python, "-c", "pass"]),
        ("python -c 'import click'", [python, "-c", "import click"]),
        ("python -c 'import plait'", [python, "-c", "import plait"]),
        ("plait --help", [*plait, "--help"]),
        ("plait run --help", [*plait, "run", "--help"]),
        ("python -m plait.cli --help", [python, "-m", "plait.cli", "--help"]),
        # the same help with plugin loading switched off: what core itself costs
        ("plait --help, no plugins", [python, "-c", NO_PLUGINS]),
    ]


NO_PLUGINS = (
    "import plait.cli.plugins as p; p.PlaitGroup._plugins = lambda self: {}; "
    "from plait.cli import main; main(['--help'])"
)


def time_once(argv: list[str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    cmds = commands()
    samples: dict[str, list[float]] = {name: [] for name, _ in cmds}
    with tempfile.TemporaryDirectory() as cwd:
        os.environ["PLAIT_HOME"] = os.path.join(cwd, "home")
        for _, argv in cmds:  # warm-up: file cache, .pyc files
            time_once(argv, cwd)
        for _ in range(args.repeat):
            for name, argv in cmds:
                samples[name].append(time_once(argv, cwd))

    print(f"plait CLI start-up, {args.repeat} runs each (load average {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} CPUs)\n")
    print(f"{'command':<30} {'median ms':>10} {'min ms':>8}  target")
    print("-" * 62)
    for name, _ in cmds:
        median = statistics.median(samples[name]) * 1000
        fastest = min(samples[name]) * 1000
        verdict = ""
        if "plait --help" in name or "plait.cli" in name or name.startswith("plait run"):
            verdict = "ok" if median < TARGET_MS else f"over {TARGET_MS:.0f} ms"
        print(f"{name:<30} {median:>10.0f} {fastest:>8.0f}  {verdict}")


if __name__ == "__main__":
    main()
