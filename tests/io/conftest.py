"""One ``storage`` fixture for the IO manager tests: local dir, ``memory://`` and S3 (moto)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from tests.io._storage import Storage


@pytest.fixture(
    params=["local", "memory", pytest.param("s3", marks=pytest.mark.services)],
)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "local":
        yield Storage("local", str(tmp_path / "store"))
    elif request.param == "memory":
        url = f"memory://plait-test-{uuid.uuid4().hex[:12]}"
        yield Storage("memory", url)
        fs, path = fsspec.core.url_to_fs(url)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    else:
        s3 = request.getfixturevalue("s3_url")
        yield Storage("s3", s3.url, s3.storage_options, bucket=s3.bucket)
