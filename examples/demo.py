"""The demo job: a small ETL pipeline that shows most of plait in 60 lines.

Run it with `plait run examples/demo.py` (in-process), or on a process pool with
`plait run examples/demo.py --executor multiprocess`.
"""

from __future__ import annotations

from plait import (
    Config,
    ConfigurableResource,
    DynamicOut,
    DynamicOutput,
    Out,
    Output,
    RetryPolicy,
    job,
    op,
)


class ExtractConfig(Config):
    """How many orders to generate."""

    rows: int = 12


class Warehouse(ConfigurableResource):
    """Where results are published (a stand-in for a database client)."""

    table: str = "daily_revenue"


@op
def extract(context, config: ExtractConfig) -> list[dict]:
    """Fake an orders extract: region, amount."""
    regions = ["north", "south", "east", "west"]
    orders = [{"region": regions[i % 4], "amount": 10.0 + i} for i in range(config.rows)]
    context.log.info("extracted %d orders", len(orders))
    return orders


@op(out=DynamicOut(list))
def split_by_region(orders: list[dict]):
    """Fan out: one mapped step per region."""
    for region in sorted({o["region"] for o in orders}):
        yield DynamicOutput([o for o in orders if o["region"] == region], mapping_key=region)


@op(retry_policy=RetryPolicy(max_retries=2, delay=0.1))
def revenue(context, orders: list[dict]) -> dict:
    total = sum(o["amount"] for o in orders)
    context.log.info("region %s: %.2f", context.mapping_key, total)
    return {"region": context.mapping_key, "revenue": total}


@op(out={"report": Out(dict), "alert": Out(str, is_required=False)})
def summarize(per_region: list[dict]):
    """Two outputs: the report always, an alert only when a region is below target."""
    report = {r["region"]: r["revenue"] for r in per_region}
    yield Output(report, "report", metadata={"regions": len(report)})
    low = sorted(region for region, value in report.items() if value < 45)
    if low:
        yield Output(f"low revenue in {', '.join(low)}", "alert")


@op
def publish(context, report: dict, warehouse: Warehouse) -> int:
    context.log.info("publishing %d rows to %s", len(report), warehouse.table)
    return len(report)


@op
def page_oncall(context, alert: str) -> None:
    context.log.warning("ALERT: %s", alert)


@job(resources={"warehouse": Warehouse()})
def daily_revenue():
    per_region = split_by_region(extract()).map(revenue).collect()
    report, alert = summarize(per_region)
    publish(report)
    page_oncall(alert)
