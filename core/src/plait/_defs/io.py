"""Declaring inputs and outputs (``In``, ``Out``, ``DynamicOut``) and yielding them
(``Output``, ``DynamicOutput``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from plait.errors import PlaitDefinitionError


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()

DEFAULT_OUTPUT = "result"
DEFAULT_IO_MANAGER_KEY = "io_manager"
_MAPPING_KEY = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class In:
    """An op input: its type, a description, and a default used when nothing is wired to it."""

    type: Any = Any
    description: str | None = None
    default: Any = NO_DEFAULT

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT


@dataclass(frozen=True)
class Out:
    """An op output. ``is_required=False`` outputs may be left out (skipping downstream);
    ``io_manager_key`` names the resource that stores it; ``metadata`` reaches the IO
    manager (e.g. ``{"serializer": "json"}``)."""

    type: Any = Any
    description: str | None = None
    io_manager_key: str = DEFAULT_IO_MANAGER_KEY
    is_required: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def is_dynamic(self) -> bool:
        return False


@dataclass(frozen=True)
class DynamicOut(Out):
    """An output yielded many times, each with a ``mapping_key``, to fan out with ``.map``."""

    @property
    def is_dynamic(self) -> bool:
        return True


@dataclass(frozen=True)
class Output:
    """A value for a named output, yielded (or returned) by an op, with optional metadata."""

    value: Any
    output_name: str = DEFAULT_OUTPUT
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class DynamicOutput:
    """One item of a ``DynamicOut``; ``mapping_key`` names the mapped step (``op[key]``)."""

    value: Any
    mapping_key: str
    output_name: str = DEFAULT_OUTPUT
    metadata: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.mapping_key, str) or not _MAPPING_KEY.match(self.mapping_key):
            raise PlaitDefinitionError(
                f"DynamicOutput mapping_key {self.mapping_key!r} is invalid: use letters, "
                "digits and underscores only (it becomes part of a step key and a storage path)"
            )
