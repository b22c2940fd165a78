"""Throughput of FsspecIOManager against raw fsspec on the same URL (run by hand).

Two workloads, each stored then loaded, median of ``--repeat`` interleaved runs (raw
first, then plait first, alternately):

- one large numpy array (``--size-mb``, default 100 MB): the IO manager (cloudpickle,
  atomic write, header line) should stay within 10% of writing the array's bytes with
  ``fs.open(path, "wb")`` and reading them back;
- many small objects (``--small``, default 1,000 dicts): shows the per-object cost
  (temp file + rename locally; on S3 one PUT per object, and one GET to load where
  raw ``fs.open`` sends a HEAD and a GET).

Targets: a local temp dir, and with ``--s3`` a moto S3 server started on a free loopback
port (or an existing endpoint via ``--s3-endpoint``; dummy credentials). Needs numpy::

    uv run --with numpy python bench/io_throughput.py --s3
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
import uuid
from collections.abc import Callable

try:
    import numpy as np
except ImportError:
    sys.exit(
        "numpy is needed for this benchmark; run it with\n"
        "    uv run --with numpy python bench/io_throughput.py"
    )

import fsspec
from _storage import Target, local_target, moto_endpoint, s3_target  # bench/ is on sys.path
from fsspec.implementations.local import LocalFileSystem
from plait_io import FsspecIOManager, InputContext, OutputContext


def make_parent(fs: fsspec.AbstractFileSystem, path: str) -> None:
    if isinstance(fs, LocalFileSystem):  # object stores have no directories to make
        fs.makedirs(fs._parent(path), exist_ok=True)


def remove(fs: fsspec.AbstractFileSystem, paths: list[str]) -> None:
    fs.rm(paths, recursive=True)


def measure(
    repeat: int,
    cases: dict[str, Callable[[int], None]],
    cleanup: Callable[[int], None],
) -> dict[str, float]:
    """Median seconds per case. ``cases`` come in (raw, plait) pairs, interleaved so
    that disk writeback, page cache and server warm-up hit raw fsspec and the IO manager
    alike: each pair runs raw first in even repetitions and plait first in odd ones, so
    neither side always pays for what the other left behind (on S3, moto's handling of
    the upload just before). Each repetition ``i`` stores to a fresh path, as a new run
    would."""
    names = list(cases)
    swapped = [name for pair in zip(names[1::2], names[::2], strict=True) for name in pair]
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(repeat):
        for name in names if i % 2 == 0 else swapped:
            start = time.perf_counter()
            cases[name](i)
            times[name].append(time.perf_counter() - start)
        cleanup(i)  # untimed: keeps the disk (or the moto server's memory) small
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_large(target: Target, size_mb: int, repeat: int) -> dict[str, float]:
    array = np.random.default_rng(0).random(size_mb * 2**20 // 8)
    fs, base = fsspec.core.url_to_fs(target.url, **target.storage_options)
    base = base.rstrip("/")
    manager = FsspecIOManager(target.url, target.storage_options)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    contexts = [OutputContext(f"{prefix}-{i}", "make_array", "result") for i in range(repeat)]
    raw_paths = [f"{base}/{prefix}-raw/{i}.bin" for i in range(repeat)]
    make_parent(fs, raw_paths[0])

    def raw_store(i: int) -> None:
        with fs.open(raw_paths[i], "wb") as f:
            f.write(memoryview(array).cast("B"))

    def raw_load(i: int) -> None:
        with fs.open(raw_paths[i], "rb") as f:
            loaded = np.frombuffer(f.read(), dtype=array.dtype)
        assert loaded.shape == array.shape

    def plait_store(i: int) -> None:
        manager.handle_output(contexts[i], array)

    def plait_load(i: int) -> None:
        ctx = contexts[i]
        loaded = manager.load_input(InputContext(ctx.run_id, "use", "array", ctx))
        assert loaded.shape == array.shape and loaded.flags.writeable

    seconds = measure(
        repeat,
        {
            "raw store": raw_store,
            "plait store": plait_store,
            "raw load": raw_load,
            "plait load": plait_load,
        },
        lambda i: remove(fs, [raw_paths[i], f"{base}/{contexts[i].run_id}"]),
    )
    mb = array.nbytes / 2**20
    return {name: mb / s for name, s in seconds.items()}


def bench_small(target: Target, count: int, repeat: int) -> dict[str, float]:
    objects = [{"i": i, "name": f"row-{i}", "values": list(range(10))} for i in range(count)]
    fs, base = fsspec.core.url_to_fs(target.url, **target.storage_options)
    base = base.rstrip("/")
    manager = FsspecIOManager(target.url, target.storage_options)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"

    def run_id(i: int) -> str:
        return f"{prefix}-{i}"

    def raw_paths(i: int) -> list[str]:
        return [f"{base}/{prefix}-raw-{i}/op_{n}/result" for n in range(count)]

    def raw_store(i: int) -> None:
        for path, obj in zip(raw_paths(i), objects, strict=True):
            make_parent(fs, path)  # the same one-directory-per-step layout
            with fs.open(path, "wb") as f:
                f.write(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def raw_load(i: int) -> None:
        for path in raw_paths(i):
            with fs.open(path, "rb") as f:
                pickle.loads(f.read())

    def plait_store(i: int) -> None:
        for n, obj in enumerate(objects):
            manager.handle_output(OutputContext(run_id(i), f"op_{n}", "result"), obj)

    def plait_load(i: int) -> None:
        for n in range(count):
            ctx = OutputContext(run_id(i), f"op_{n}", "result")
            manager.load_input(InputContext(ctx.run_id, "use", "value", ctx))

    seconds = measure(
        repeat,
        {
            "raw store": raw_store,
            "plait store": plait_store,
            "raw load": raw_load,
            "plait load": plait_load,
        },
        lambda i: remove(fs, [f"{base}/{prefix}-raw-{i}", f"{base}/{run_id(i)}"]),
    )
    return {name: count / s for name, s in seconds.items()}


def print_row(target: str, case: str, unit: str, r: dict[str, float]) -> None:
    store = r["plait store"] / r["raw store"]
    load = r["plait load"] / r["raw load"]
    print(
        f"{target:<6} {case:<14} {r['raw store']:>9.1f} {r['plait store']:>9.1f} {store:>6.2f}"
        f"  {r['raw load']:>9.1f} {r['plait load']:>9.1f} {load:>6.2f}  {unit}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=6, help="an even number balances the order")
    parser.add_argument("--dir", help="local directory to bench in (default: the temp dir)")
    parser.add_argument("--s3", action="store_true", help="also bench a local moto server")
    parser.add_argument("--s3-endpoint", help="use this S3 endpoint instead of starting moto")
    args = parser.parse_args()

    print(
        f"{'target':<6} {'case':<14} {'raw st':>9} {'plait st':>9} {'ratio':>6}"
        f"  {'raw ld':>9} {'plait ld':>9} {'ratio':>6}  unit"
    )
    with local_target(args.dir) as target:
        run(target, args)
    if args.s3_endpoint:
        with s3_target(args.s3_endpoint) as target:
            run(target, args)
    elif args.s3:
        with moto_endpoint() as endpoint, s3_target(endpoint) as target:
            run(target, args)


def run(target: Target, args: argparse.Namespace) -> None:
    large = bench_large(target, args.size_mb, args.repeat)
    print_row(target.name, f"{args.size_mb} MB array", "MB/s", large)
    small = bench_small(target, args.small, args.repeat)
    print_row(target.name, f"{args.small} small", "objects/s", small)


if __name__ == "__main__":
    main()
