"""A real S3 API for tests: a moto server on a free loopback port, talked to over HTTP.

Fixtures:

- ``s3_endpoint`` (session): starts ``python -m moto.server`` once and yields its URL,
  e.g. ``http://127.0.0.1:54321``; the server is stopped when the session ends.
- ``s3_url`` (function): a fresh, empty bucket, as an ``S3Location`` with the URL
  ``s3://<bucket>/plait`` and the ``storage_options`` s3fs needs to reach the server.

Credentials are dummy values passed through ``storage_options`` (and the server's own
environment), never read from the machine, so these tests cannot touch real AWS.
If moto cannot start, tests that use the fixtures are skipped (or fail under
``PLAIT_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.services._require import free_port, missing_service, wait_for_port

DUMMY_KEY = "plait-test-key"
DUMMY_SECRET = "plait-test-secret"
REGION = "us-east-1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class S3Location:
    """Where a test may store objects: an ``s3://`` URL plus the options to reach it."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    bucket: str = ""
    endpoint_url: str = ""

    def filesystem(self) -> Any:
        """An s3fs filesystem on this server, for inspecting what a test stored."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)


def s3_storage_options(endpoint_url: str, **extra: Any) -> dict[str, Any]:
    """s3fs options for ``endpoint_url`` with dummy credentials."""
    return {
        "key": DUMMY_KEY,
        "secret": DUMMY_SECRET,
        "client_kwargs": {"endpoint_url": endpoint_url, "region_name": REGION},
        **extra,
    }


def _dummy_aws_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=DUMMY_KEY,
        AWS_SECRET_ACCESS_KEY=DUMMY_SECRET,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server running for the whole test session."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("s3fs") is None:
        missing_service("moto[server] and s3fs are needed for the S3 tests (uv sync)")
    port = free_port()
    # A file, not a pipe: moto logs every request, and a full pipe would stall it.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_dummy_aws_env(),
        )
        try:
            if not wait_for_port(port, START_TIMEOUT) or proc.poll() is not None:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
                log.seek(0)
                tail = log.read().decode(errors="replace")[-2000:]
                missing_service(f"moto server did not start on port {port}: {tail}")
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


@pytest.fixture
def s3_url(s3_endpoint: str) -> Iterator[S3Location]:
    """A fresh bucket on the moto server, removed after the test."""
    bucket = f"plait-test-{uuid.uuid4().hex[:12]}"
    location = S3Location(
        url=f"s3://{bucket}/plait",
        storage_options=s3_storage_options(s3_endpoint),
        bucket=bucket,
        endpoint_url=s3_endpoint,
    )
    fs = location.filesystem()
    # Not fs.mkdir: s3fs would send LocationConstraint=us-east-1, which S3 rejects.
    fs.call_s3("create_bucket", Bucket=bucket)
    yield location
    # A test may have emptied or broken its bucket; the server dies with the session anyway.
    with contextlib.suppress(OSError):
        fs.rm(bucket, recursive=True)
