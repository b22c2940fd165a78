"""The example job of the docker/ deployment: numbers crunched in parallel by the workers.

    partition --(one mapped step per partition)--> crunch[part_0..] --> summarize --> report

Each ``crunch`` step logs the host it ran on, so the run shows the steps spread over the
worker containers. ``report`` is tagged ``celery/queue: heavy``: on Celery only workers
consuming that queue run it (``worker-heavy`` in compose.celery.yaml); Dask ignores the tag.

Step outputs must be where every worker reaches them, so the job's IO manager is built
from the environment when this module is imported (in the coordinator, and on each Celery
worker, which imports the job itself):

- ``PLAIT_STORAGE_URL``: base URL of the outputs, e.g. ``s3://plait/runs`` (required);
- ``PLAIT_S3_ENDPOINT``: an S3-compatible endpoint such as MinIO (``http://minio:9000``);
  leave it unset for AWS S3;
- credentials: not here. s3fs reads ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or a
  role) in each process itself, so they are never pickled with the job nor stored with a run.

Run it as the compose files do: ``plait run jobs.py -c /config/dask.yaml`` (or celery.yaml).
"""

from __future__ import annotations

import os
import socket

from plait import Config, DynamicOut, DynamicOutput, Out, job, op
from plait_io import FsspecIOManager

STORAGE_URL_ENV = "PLAIT_STORAGE_URL"
S3_ENDPOINT_ENV = "PLAIT_S3_ENDPOINT"


def storage_from_environment() -> FsspecIOManager:
    """The job's IO manager: ``FsspecIOManager`` on ``$PLAIT_STORAGE_URL``."""
    url = os.environ.get(STORAGE_URL_ENV)
    if not url:
        raise RuntimeError(
            f"{STORAGE_URL_ENV} is not set: set it to where step outputs go, a URL every "
            "worker can reach, e.g. s3://my-bucket/plait (the compose files set it)"
        )
    endpoint = os.environ.get(S3_ENDPOINT_ENV)
    options = {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}
    return FsspecIOManager(url, storage_options=options)


class PartitionConfig(Config):
    """How much work to make, and in how many steps."""

    numbers: int = 100_000
    partitions: int = 8


@op(out=DynamicOut(list))
def partition(context, config: PartitionConfig):
    """Fan out: one mapped ``crunch`` step per slice of the numbers."""
    size = -(-config.numbers // config.partitions)  # ceiling division
    context.log.info("%d numbers in %d partitions", config.numbers, config.partitions)
    for index, start in enumerate(range(0, config.numbers, size)):
        yield DynamicOutput(list(range(start, min(start + size, config.numbers))),
                           mapping_key=f"part_{index}")


@op
def crunch(context, numbers: list[int]) -> dict:
    """A stand-in for real work: the sum of squares of one partition."""
    host = socket.gethostname()
    context.log.info("%s: %d numbers on %s", context.mapping_key, len(numbers), host)
    return {"partition": context.mapping_key, "sum_of_squares": sum(n * n for n in numbers),
            "host": host}


@op(out=Out(dict, metadata={"serializer": "json"}))  # readable in the MinIO console
def summarize(parts: list[dict]) -> dict:
    hosts: dict[str, int] = {}
    for part in parts:
        hosts[part["host"]] = hosts.get(part["host"], 0) + 1
    return {"partitions": len(parts), "sum_of_squares": sum(p["sum_of_squares"] for p in parts),
            "steps_per_host": hosts}


@op(tags={"celery/queue": "heavy"}, out=Out(str, metadata={"serializer": "json"}))
def report(context, summary: dict) -> str:
    """Runs on the ``heavy`` queue under Celery (where a costly final step would go)."""
    text = (f"sum of squares over {summary['partitions']} partitions: "
            f"{summary['sum_of_squares']}; steps per host: {summary['steps_per_host']}")
    context.log.info("%s (reported from %s)", text, socket.gethostname())
    return text


@job(resources={"io_manager": storage_from_environment()},
     description="Crunch numbers on every worker; outputs on $PLAIT_STORAGE_URL.")
def crunch_numbers():
    report(summarize(partition().map(crunch).collect()))
