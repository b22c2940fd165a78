"""plait_io: where step outputs live.

An IO manager stores each step output (``handle_output``) and loads it again for the
steps downstream (``load_input``). This distribution has no plait imports, so that any
worker can load outputs with nothing but ``plait-io`` installed.

- ``IOManager``: the base class; ``InputContext`` / ``OutputContext``: what it is told.
- ``MemoryIOManager``: outputs in the coordinator's memory (in-process runs only).
- ``FsspecIOManager``: outputs on any fsspec URL (local, ``memory://``, ``s3://``).
- ``StorageUnavailableError`` (preflight) and ``OutputNotFoundError`` (load_input): the
  two storage errors the run loop recognises and reports as they are.
- ``SERIALIZER_NAMES`` and ``check_serializer(name)``: the serializers ``FsspecIOManager``
  knows, e.g. to validate a setting where it is configured.

``FsspecIOManager`` and the serializers are resolved lazily so that importing plait_io
imports neither fsspec nor cloudpickle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plait_io._base import InputContext, IOManager, OutputContext, StoredOutput
from plait_io._errors import OutputNotFoundError, StorageUnavailableError
from plait_io._memory import MemoryIOManager

if TYPE_CHECKING:
    from plait_io._serializers import SERIALIZER_NAMES
    from plait_io.fsspec import FsspecIOManager

__all__ = [
    "SERIALIZER_NAMES",
    "FsspecIOManager",
    "IOManager",
    "InputContext",
    "MemoryIOManager",
    "OutputContext",
    "OutputNotFoundError",
    "StorageUnavailableError",
    "StoredOutput",
    "check_serializer",
]


def check_serializer(name: str) -> str:
    """``name`` if it is a serializer ``FsspecIOManager`` knows; else a ``ValueError``
    that lists the known ones."""
    from plait_io._serializers import get_serializer

    get_serializer(name)
    return name


def __getattr__(name: str) -> Any:
    if name == "FsspecIOManager":
        from plait_io.fsspec import FsspecIOManager

        return FsspecIOManager
    if name == "SERIALIZER_NAMES":
        from plait_io._serializers import SERIALIZER_NAMES

        return SERIALIZER_NAMES
    raise AttributeError(f"module 'plait_io' has no attribute {name!r}")
