"""preflight(): the base URL is reachable and writable, or a clear StorageUnavailableError."""

from __future__ import annotations

import importlib.util
import pickle
import time
from pathlib import Path

import pytest
from plait_io import FsspecIOManager, StorageUnavailableError

from tests.io._storage import Storage
from tests.services._require import free_port
from tests.services.s3 import DUMMY_SECRET, s3_storage_options

# Fail fast when nothing listens: one attempt, short timeouts (botocore retries otherwise).
FAST_FAIL = {
    "config_kwargs": {
        "connect_timeout": 1,
        "read_timeout": 1,
        "retries": {"max_attempts": 1, "mode": "standard"},
    }
}


def test_preflight_passes_and_leaves_nothing_behind(storage: Storage) -> None:
    manager = storage.manager()
    manager.preflight()
    manager.preflight()  # idempotent
    assert storage.listing(manager.base_url) == []


@pytest.mark.services
def test_nonexistent_bucket(s3_endpoint: str) -> None:
    url = "s3://plait-no-such-bucket/outputs"
    manager = FsspecIOManager(url, s3_storage_options(s3_endpoint))

    with pytest.raises(StorageUnavailableError) as info:
        manager.preflight()

    message = str(info.value)
    assert message.startswith(f"storage at {url} is unavailable: no such bucket")
    assert "Create the bucket" in message
    assert DUMMY_SECRET not in message
    assert isinstance(info.value, OSError)


def test_a_file_where_the_directory_should_be(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("I am a file")

    for base in (blocker, blocker / "outputs"):
        with pytest.raises(StorageUnavailableError) as info:
            FsspecIOManager(base).preflight()
        message = str(info.value)
        assert f"storage at file://{base.as_posix()} is unavailable" in message
        assert "a file is in the way where a directory should be" in message


def test_connection_refused_fails_fast() -> None:
    pytest.importorskip("s3fs", reason="s3fs is needed to talk S3: uv sync")
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    manager = FsspecIOManager("s3://any-bucket/outputs", s3_storage_options(endpoint, **FAST_FAIL))

    started = time.monotonic()
    with pytest.raises(StorageUnavailableError) as info:
        manager.preflight()

    assert time.monotonic() - started < 20
    message = str(info.value)
    assert "storage at s3://any-bucket/outputs is unavailable" in message
    assert "connection refused or no network" in message
    assert endpoint in message  # the cause names where it tried to connect
    assert DUMMY_SECRET not in message


def test_an_unknown_protocol_is_explained() -> None:
    with pytest.raises(StorageUnavailableError, match="unavailable: unknown URL protocol"):
        FsspecIOManager("plaitnosuchprotocol://bucket/outputs").preflight()


def test_a_missing_filesystem_package_is_explained() -> None:
    if importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed; no missing package to report")
    with pytest.raises(StorageUnavailableError, match="a package is missing .*gcsfs"):
        FsspecIOManager("gcs://bucket/outputs").preflight()


def test_the_error_pickles_with_its_fields() -> None:
    error = StorageUnavailableError("s3://b/p", "no such bucket", "Create it")
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.url, clone.cause, clone.hint, str(clone)) == (
        "s3://b/p",
        "no such bucket",
        "Create it",
        "storage at s3://b/p is unavailable: no such bucket. Create it",
    )
