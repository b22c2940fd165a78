"""``Instance``: where runs, events and (by default) step outputs are kept.

A persistent instance lives in a home folder (``PLAIT_HOME``, else ``.plait/`` in the
working directory): SQLite run storage at ``runs.db`` and outputs under ``storage/``.
``Instance.ephemeral()`` keeps everything in memory, for tests and notebooks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plait_io import IOManager, MemoryIOManager

from plait._storage.base import InMemoryRunStorage, RunStorage

HOME_ENV = "PLAIT_HOME"
DEFAULT_HOME = ".plait"


class Instance:
    """Run storage plus the default output location."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.home: Path | None = Path(home or os.environ.get(HOME_ENV) or DEFAULT_HOME).absolute()
        self.home.mkdir(parents=True, exist_ok=True)
        self.storage_dir: Path | None = self.home / "storage"
        from plait._storage.sqlite import SqliteRunStorage

        self.storage: RunStorage = SqliteRunStorage(self.home / "runs.db")

    @classmethod
    def ephemeral(cls) -> Instance:
        """Everything in memory: nothing outlives the process."""
        instance = cls.__new__(cls)
        instance.home = None
        instance.storage_dir = None
        instance.storage = InMemoryRunStorage()
        return instance

    @property
    def is_ephemeral(self) -> bool:
        return self.home is None

    def default_io_manager(self, config: Mapping[str, Any] | None = None) -> IOManager:
        """The IO manager of a job that configures none, with ``config`` (the run config's
        ``resources.io_manager.config``) applied.

        Persistent: a ``ConfigurableFsspecIOManager`` on the storage folder, whose fields
        run config may replace (``base_url``, ``storage_options``, ``serializer``).
        Ephemeral: memory, unless ``config`` names a ``base_url``. Bad config raises
        ``pydantic.ValidationError`` (run config validation reports it with its path).
        """
        if self.storage_dir is None:
            if not config:
                return MemoryIOManager()
            from plait.io_managers import fsspec_io_from_config

            return fsspec_io_from_config(config)
        from plait.io_managers import ConfigurableFsspecIOManager

        manager = ConfigurableFsspecIOManager(base_url=str(self.storage_dir))
        if config:
            return manager.with_config(dict(config))  # type: ignore[return-value]
        return manager

    def close(self) -> None:
        self.storage.close()

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Instance({str(self.home) if self.home else 'ephemeral'})"
