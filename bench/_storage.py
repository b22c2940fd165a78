"""Storage targets the IO benchmarks run against: a local temp dir, and S3 on a moto
server started on a free loopback port (or an existing endpoint; dummy credentials)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec


@dataclass
class Target:
    name: str
    url: str
    storage_options: dict[str, Any]


@contextmanager
def local_target(directory: str | None) -> Iterator[Target]:
    path = tempfile.mkdtemp(prefix="plait-bench-", dir=directory)
    try:
        yield Target("local", path, {})
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def moto_endpoint() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit("moto server did not start (is moto[server] installed? uv sync)")
                time.sleep(0.05)  # a server start has no event to wait on
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def s3_target(endpoint: str) -> Iterator[Target]:
    options = {
        "key": "bench",
        "secret": "bench",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }
    bucket = f"plait-bench-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("s3", **options)
    fs.call_s3("create_bucket", Bucket=bucket)
    try:
        yield Target("s3", f"s3://{bucket}/plait", options)
    finally:
        fs.rm(bucket, recursive=True)
