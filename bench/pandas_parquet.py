"""Parquet through ParquetIOManager against pandas' own to_parquet / read_parquet (run by hand).

A DataFrame of ``--rows`` rows (default 1,000,000: int64, float64, text, category,
datetime) is stored and loaded ``--repeat`` times, interleaved, on the same URL:

- pandas: ``df.to_parquet(url)`` and ``pd.read_parquet(url)`` (no atomicity, no layout);
- plait parquet: ``ParquetIOManager.handle_output`` / ``load_input`` (encode in memory,
  atomic write, the run layout, the sniffing loader);
- plait pickle: ``FsspecIOManager`` with its default cloudpickle serializer, for scale.

Medians in milliseconds, and the ratio plait parquet / pandas (target: within 1.15 for
store and load). Targets: a local temp dir, and with ``--s3`` a moto S3 server on a free
loopback port (or ``--s3-endpoint URL``; dummy credentials)::

    uv run python bench/pandas_parquet.py --s3
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

import fsspec
import numpy as np
import pandas as pd
from _storage import Target, local_target, moto_endpoint, s3_target  # bench/ is on sys.path
from plait_io import FsspecIOManager, InputContext, OutputContext
from plait_pandas import ParquetIOManager


def make_frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    regions = np.array(["north", "south", "east", "west"])
    return pd.DataFrame(
        {
            "order_id": np.arange(rows, dtype="int64"),
            "amount": rng.random(rows) * 100,
            "customer": pd.Series(rng.integers(0, 50_000, rows)).map("customer-{}".format),
            "region": pd.Categorical(regions[rng.integers(0, 4, rows)]),
            "placed_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(rows), unit="s"),
        }
    )


def measure(repeat: int, cases: dict[str, Callable[[int], None]]) -> dict[str, float]:
    """Median milliseconds per case; cases interleave so that page cache, disk writeback
    and server warm-up hit them alike. Repetition ``i`` writes to a fresh path."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(repeat):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) * 1000 for name, ts in times.items()}


def bench(target: Target, df: pd.DataFrame, repeat: int) -> tuple[dict[str, float], dict[str, int]]:
    fs, base = fsspec.core.url_to_fs(target.url, **target.storage_options)
    base = base.rstrip("/")
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    options = target.storage_options or None
    parquet = ParquetIOManager(target.url, target.storage_options)
    pickled = FsspecIOManager(target.url, target.storage_options)
    sizes: dict[str, int] = {}

    def url(i: int) -> str:
        return f"{target.url}/{prefix}-pandas/{i}.parquet"

    if target.name == "local":
        fs.makedirs(f"{base}/{prefix}-pandas", exist_ok=True)

    def ctx(kind: str, i: int) -> OutputContext:
        return OutputContext(f"{prefix}-{kind}-{i}", "make_frame", "result")

    def load_ctx(kind: str, i: int) -> InputContext:
        return InputContext("bench", "use", "df", ctx(kind, i))

    def pandas_store(i: int) -> None:
        df.to_parquet(url(i), storage_options=options)

    def pandas_load(i: int) -> None:
        assert len(pd.read_parquet(url(i), storage_options=options)) == len(df)

    def plait_store(i: int) -> None:
        sizes["parquet"] = parquet.handle_output(ctx("parquet", i), df).size or 0

    def plait_load(i: int) -> None:
        assert len(parquet.load_input(load_ctx("parquet", i))) == len(df)

    def pickle_store(i: int) -> None:
        sizes["pickle"] = pickled.handle_output(ctx("pickle", i), df).size or 0

    def pickle_load(i: int) -> None:
        assert len(pickled.load_input(load_ctx("pickle", i))) == len(df)

    try:
        ms = measure(
            repeat,
            {
                "pandas store": pandas_store,
                "parquet store": plait_store,
                "pickle store": pickle_store,
                "pandas load": pandas_load,
                "parquet load": plait_load,
                "pickle load": pickle_load,
            },
        )
        sizes["pandas"] = fs.size(url(0))
    finally:
        fs.rm(
            [p for p in fs.ls(base, detail=False) if p.rsplit("/", 1)[-1].startswith(prefix)],
            recursive=True,
        )
    return ms, sizes


def print_rows(target: str, ms: dict[str, float], sizes: dict[str, int]) -> None:
    for op in ("store", "load"):
        pandas, parquet, pickle = ms[f"pandas {op}"], ms[f"parquet {op}"], ms[f"pickle {op}"]
        print(
            f"{target:<6} {op:<6} {pandas:>10.1f} {parquet:>14.1f} {parquet / pandas:>6.2f}"
            f" {pickle:>13.1f}"
        )
    mb = {k: v / 2**20 for k, v in sizes.items()}
    print(
        f"{target:<6} {'MB':<6} {mb['pandas']:>10.1f} {mb['parquet']:>14.1f} {'':>6}"
        f" {mb['pickle']:>13.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", help="local directory to bench in (default: the temp dir)")
    parser.add_argument("--s3", action="store_true", help="also bench a local moto server")
    parser.add_argument("--s3-endpoint", help="use this S3 endpoint instead of starting moto")
    args = parser.parse_args()

    df = make_frame(args.rows)
    print(
        f"{args.rows:,} rows, {df.memory_usage(deep=True).sum() / 2**20:.0f} MB in memory; "
        f"median ms of {args.repeat} runs"
    )
    print(
        f"{'target':<6} {'op':<6} {'pandas':>10} {'plait parquet':>14} {'ratio':>6} {'plait pickle':>13}"
    )
    with local_target(args.dir) as target:
        print_rows(target.name, *bench(target, df, args.repeat))
    if args.s3_endpoint:
        with s3_target(args.s3_endpoint) as target:
            print_rows(target.name, *bench(target, df, args.repeat))
    elif args.s3:
        with moto_endpoint() as endpoint, s3_target(endpoint) as target:
            print_rows(target.name, *bench(target, df, args.repeat))


if __name__ == "__main__":
    main()
