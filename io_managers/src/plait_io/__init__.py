"""plait_io: where step outputs live.

An IO manager stores each step output (``handle_output``) and loads it again for the
steps downstream (``load_input``). This distribution has no plait imports, so that any
worker can load outputs with nothing but ``plait-io`` installed.

- ``IOManager``: the base class; ``InputContext`` / ``OutputContext``: what it is told.
- ``MemoryIOManager``: outputs in the coordinator's memory (in-process runs only).
- ``FsspecIOManager``: outputs on any fsspec URL (local, ``memory://``, ``s3://``).
- ``StorageUnavailableError`` (preflight) and ``OutputNotFoundError`` (load_input): the
  two storage errors the run loop recognises and reports as they are.

``FsspecIOManager`` is resolved lazily so that importing plait_io does not import fsspec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plait_io._base import InputContext, IOManager, OutputContext, StoredOutput
from plait_io._errors import OutputNotFoundError, StorageUnavailableError
from plait_io._memory import MemoryIOManager

if TYPE_CHECKING:
    from plait_io.fsspec import FsspecIOManager

__all__ = [
    "FsspecIOManager",
    "IOManager",
    "InputContext",
    "MemoryIOManager",
    "OutputContext",
    "OutputNotFoundError",
    "StorageUnavailableError",
    "StoredOutput",
]


def __getattr__(name: str) -> Any:
    if name == "FsspecIOManager":
        from plait_io.fsspec import FsspecIOManager

        return FsspecIOManager
    raise AttributeError(f"module 'plait_io' has no attribute {name!r}")
