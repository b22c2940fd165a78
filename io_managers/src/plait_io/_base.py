"""The IO manager contract: store an output, load an input.

The run loop calls ``handle_output`` right after an op produced a value and
``load_input`` right before a downstream op runs, possibly in another process or on
another machine. Everything a manager needs to find an object again is in the context
records below, which are plain and picklable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class OutputContext:
    """Identifies one step output: which run, step, output and (for mapped outputs) key."""

    run_id: str
    step_key: str
    output_name: str
    mapping_key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    """Metadata declared on the ``Out`` (e.g. ``{"serializer": "json"}``)."""
    attempt: int = 0
    """Which attempt of the step stores it. A retry stores apart from earlier attempts, so
    a late write of an abandoned attempt can never replace the output that was accepted."""


@dataclass(frozen=True)
class InputContext:
    """What a step is loading: its own identity plus the upstream output it reads.

    ``upstream_output.run_id`` is the run that *produced* the object, which differs from
    ``run_id`` when a re-execution loads outputs its parent run stored.
    """

    run_id: str
    step_key: str
    input_name: str
    upstream_output: OutputContext
    location: str | None = None
    """Where the upstream output was stored, as reported by ``handle_output`` (or None)."""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredOutput:
    """What ``handle_output`` reports about an object it stored (goes into the events)."""

    location: str | None = None
    size: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class IOManager(ABC):
    """Stores step outputs and loads them as downstream inputs.

    Subclasses must be picklable and cheap to pickle: cross-process executors ship the
    manager to every worker. Build clients and filesystems lazily on first use.
    """

    process_local: ClassVar[bool] = False
    """True when outputs live in one process's memory and cannot cross processes."""

    @abstractmethod
    def handle_output(self, context: OutputContext, obj: Any) -> StoredOutput | None:
        """Store ``obj``; return where it went (location, size) for the event log."""

    @abstractmethod
    def load_input(self, context: InputContext) -> Any:
        """Load the upstream output described by ``context.upstream_output``."""

    def preflight(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Check, before any step runs, that storage is usable; raise with the cause if not."""

    def describe(self) -> str:
        """One line for errors and events, e.g. the base URL."""
        return type(self).__name__
