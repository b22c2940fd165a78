"""Helpers for the IO manager tests: where to store (``Storage``) and what (contexts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import fsspec
from plait_io import FsspecIOManager, InputContext, OutputContext


@dataclass(frozen=True)
class Storage:
    """A base URL a test may fill, plus how to reach it."""

    kind: str
    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    bucket: str = ""

    def manager(self, **kwargs: Any) -> FsspecIOManager:
        return FsspecIOManager(self.url, self.storage_options, **kwargs)

    def exists(self, location: str) -> bool:
        """Whether an object is stored at ``location``, asked of fsspec directly."""
        fs, path = fsspec.core.url_to_fs(location, **self.options_for(location))
        fs.invalidate_cache()
        return bool(fs.isfile(path))

    def listing(self, location: str) -> list[str]:
        """Every file under ``location`` (temp files included), relative to it."""
        fs, path = fsspec.core.url_to_fs(location, **self.options_for(location))
        fs.invalidate_cache()
        path = path.rstrip("/")
        return sorted(p[len(path) + 1 :] for p in fs.find(path, withdirs=False))

    def options_for(self, location: str) -> dict[str, Any]:
        return self.storage_options if location.startswith("s3://") else {}


def output(
    step_key: str = "op",
    output_name: str = "result",
    run_id: str = "run-1",
    mapping_key: str | None = None,
    **metadata: Any,
) -> OutputContext:
    return OutputContext(run_id, step_key, output_name, mapping_key, metadata)


def input_for(
    upstream: OutputContext, location: str | None = None, run_id: str | None = None
) -> InputContext:
    return InputContext(
        run_id=run_id or upstream.run_id,
        step_key="downstream",
        input_name="value",
        upstream_output=upstream,
        location=location,
    )
