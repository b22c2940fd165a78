"""Starting a plait worker: a Celery worker built from a ``CeleryConfig``, plus the
heartbeat thread the executor's health check reads (``plait_celery.heartbeat``).

``plait celery worker`` calls ``start_worker``; so does ``python -m plait_celery.worker``
(same options), for environments without the ``plait`` command.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

from celery import signals

from plait_celery.app import make_app
from plait_celery.config import CeleryConfig, safe_url
from plait_celery.heartbeat import Heartbeat

READY_LINE = "plait celery worker ready"
"""Printed to stderr once the worker consumes its queues and its heartbeat runs (scripts
may wait for the line, or for the heartbeat key ``plait:worker:<hostname>``)."""


def default_hostname() -> str:
    """Unique per process, so that several workers on one machine do not collide."""
    return f"plait{os.getpid()}@{socket.gethostname()}"


def start_worker(
    config: CeleryConfig,
    *,
    queues: Sequence[str] = (),
    concurrency: int | None = None,
    loglevel: str = "INFO",
    hostname: str | None = None,
    pool: str = "prefork",
) -> None:
    """Run a Celery worker that executes plait steps, until it is stopped (SIGTERM/SIGINT)."""
    app = make_app(config)
    queues = list(queues) or [config.queue]
    hostname = hostname or default_hostname()

    heartbeat = Heartbeat(config.result_backend, hostname, queues,
                          connect_timeout=config.connect_timeout)

    def ready(sender: Any = None, **_: Any) -> None:
        heartbeat.start()
        print(f"{READY_LINE}: {hostname} pid={os.getpid()} queues={','.join(queues)} "
              f"broker={safe_url(config.broker)}", file=sys.stderr, flush=True)

    def shutdown(sender: Any = None, **_: Any) -> None:
        heartbeat.stop()

    signals.worker_ready.connect(ready, weak=False)
    signals.worker_shutdown.connect(shutdown, weak=False)
    argv = [
        "worker",
        f"--hostname={hostname}",
        f"--queues={','.join(queues)}",
        f"--loglevel={loglevel}",
        f"--pool={pool}",
        "--without-gossip",
        "--without-mingle",
    ]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    app.worker_main(argv)


if __name__ == "__main__":
    from plait_celery.cli import worker

    worker(prog_name="python -m plait_celery.worker")
