"""An ETL job on DataFrames: typed steps whose outputs are stored as Parquet.

    extract -> clean -> revenue_by_region
                    \\-> top_orders

Every DataFrame crossing a step boundary is checked against a ``DataFrameType`` and
stored as a Parquet file at ``{base_url}/{run_id}/{step_key}/result``. The base URL comes
from the environment variable ``PLAIT_ETL_BASE_URL`` (default: ``.plait/pandas_etl`` in
the working directory), and run config overrides it, so the same job writes to S3 with::

    resources:
      io_manager:
        config:
          base_url: s3://my-bucket/etl
          storage_options: {client_kwargs: {endpoint_url: "http://127.0.0.1:9000"}}

Run it with ``plait run examples/pandas_etl.py`` (in-process) or
``plait run examples/pandas_etl.py --executor multiprocess``.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from plait import Config, job, op
from plait_pandas import Column, ConfigurableParquetIOManager, DataFrameType

BASE_URL_ENV = "PLAIT_ETL_BASE_URL"
REGIONS = ("north", "south", "east", "west")

RawOrders = DataFrameType(
    "raw_orders",
    columns={"order_id": "integer", "amount": "floating", "region": "text"},
    description="orders as extracted: may hold duplicates, refunds and unknown regions",
)
Orders = DataFrameType(
    "orders",
    columns={
        "order_id": Column("int64", unique=True),
        "amount": Column("float64", nullable=False, non_negative=True),
        "region": Column("category", nullable=False, isin=REGIONS),
    },
    strict=True,
)
RegionRevenue = DataFrameType(
    "region_revenue",
    columns={
        "orders": Column("int64", non_negative=True),
        "revenue": Column("float64", non_negative=True),
    },
    strict=True,
)


class ExtractConfig(Config):
    """How many orders to fake, and the seed that makes them reproducible."""

    rows: int = 1_000
    seed: int = 7


class TopConfig(Config):
    n: int = 5


@op
def extract(context, config: ExtractConfig) -> RawOrders:
    """Fake an orders extract, with the dirt real extracts have."""
    rng = np.random.default_rng(config.seed)
    raw = pd.DataFrame(
        {
            "order_id": rng.integers(0, config.rows, config.rows),  # some ids repeat
            "amount": rng.normal(50.0, 30.0, config.rows).round(2),  # some refunds < 0
            "region": rng.choice([*REGIONS, "unknown"], config.rows),
        }
    )
    raw.loc[raw.sample(frac=0.02, random_state=config.seed).index, "amount"] = np.nan
    context.log.info("extracted %d rows", len(raw))
    return raw


@op
def clean(context, raw: RawOrders) -> Orders:
    """Keep the first row of each order id, with a known region and a positive amount."""
    kept = raw.drop_duplicates("order_id")
    kept = kept[kept["region"].isin(REGIONS) & (kept["amount"] >= 0)]
    orders = kept.astype({"region": pd.CategoricalDtype(REGIONS)}).set_index(
        pd.RangeIndex(len(kept))
    )
    context.log.info("kept %d of %d rows", len(orders), len(raw))
    return orders


@op
def revenue_by_region(orders: Orders) -> RegionRevenue:
    """Order count and revenue per region (indexed by region)."""
    return orders.groupby("region", observed=False).agg(
        orders=("order_id", "size"), revenue=("amount", "sum")
    )


@op
def top_orders(config: TopConfig, orders: Orders) -> Orders:
    return orders.nlargest(config.n, "amount")


@job(
    resources={
        "io_manager": ConfigurableParquetIOManager(
            base_url=os.environ.get(BASE_URL_ENV, ".plait/pandas_etl")
        )
    }
)
def pandas_etl():
    orders = clean(extract())
    revenue_by_region(orders)
    top_orders(orders)
