"""The executor seam: the only part of plait that differs per engine.

The coordinator (``plait._run.coordinator``) owns scheduling, retries, skips, dynamic
expansion, timeouts and cancellation. An executor only launches a step (``submit``),
reports finished ones (``wait``) and stops one (``cancel``). Whatever the engine, the step
itself runs through ``plait.execute_step(task)``.

A step attempt ends in success or in one failure ``kind``: ``error`` (the op raised),
``crash`` (its process died), ``lost`` (the engine lost it), ``timeout`` (it ran past the
op's timeout). Executors report ``crash`` and ``lost`` outcomes themselves with
``StepOutcome.failed``; the coordinator decides what happens next.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from plait.events import StepEvent

if TYPE_CHECKING:
    from plait._defs.job import JobDefinition

FailureKind = Literal["error", "crash", "lost", "timeout", "canceled"]


@dataclass(frozen=True)
class JobRef:
    """How a worker obtains the job: a code pointer (``pkg.module:job`` or
    ``path/file.py:job``), cloudpickled bytes, or (in-process) the live object."""

    pointer: str | None = None
    pickled: bytes | None = None
    live: JobDefinition | None = field(default=None, compare=False)

    @property
    def cache_key(self) -> str:
        if self.pickled is not None:
            return "pickle:" + hashlib.sha1(self.pickled).hexdigest()
        if self.pointer is not None:
            return "pointer:" + self.pointer
        return f"live:{id(self.live)}"

    def __getstate__(self) -> dict[str, Any]:
        return {"pointer": self.pointer, "pickled": self.pickled, "live": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)


@dataclass(frozen=True)
class InputHandle:
    """Where one upstream output was stored, so a worker can load it itself."""

    run_id: str
    step_key: str
    output_name: str
    mapping_key: str | None = None
    location: str | None = None
    io_manager_key: str = "io_manager"
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InputSpec:
    """What feeds one op input: one handle, or a list (fan-in / collect)."""

    handles: tuple[InputHandle, ...]
    is_list: bool = False


@dataclass(frozen=True)
class StepTask:
    """Everything a worker needs to run one attempt of one step. Plain and serialisable:
    the only unserialisable field, ``resources``, is set for in-process execution only."""

    run_id: str
    step_key: str
    node_key: str
    attempt: int
    job: JobRef
    mapping_key: str | None = None
    op_config: dict[str, Any] | None = None
    resource_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    resource_overrides: bytes | None = None
    default_io: dict[str, Any] | None = None
    """Fields of the ``ConfigurableFsspecIOManager`` (run config applied) that workers
    build when the job configures no ``io_manager``."""
    timeout: float | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["resources"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)


@dataclass(frozen=True)
class OutputRecord:
    """One stored output (per mapping key for a dynamic output)."""

    output_name: str
    mapping_key: str | None = None
    location: str | None = None
    size: int | None = None
    io_manager_key: str = "io_manager"
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepFailure:
    """Why a step attempt failed, in a form that crosses processes (no live objects
    except ``exception``, which is dropped when it does not pickle)."""

    kind: FailureKind
    message: str
    error_type: str | None = None
    stack: str | None = None
    allow_retries: bool = True
    retry_requested: tuple[int, float] | None = None
    """(max_retries, seconds_to_wait) when the op raised RetryRequested."""
    metadata: dict[str, Any] = field(default_factory=dict)
    exception: BaseException | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class StepOutcome:
    """The end of one step attempt: its events, stored outputs, or failure."""

    run_id: str
    step_key: str
    attempt: int
    events: list[StepEvent] = field(default_factory=list)
    outputs: list[OutputRecord] = field(default_factory=list)
    failure: StepFailure | None = None

    @property
    def succeeded(self) -> bool:
        return self.failure is None

    @classmethod
    def failed(
        cls, task: StepTask, kind: FailureKind, message: str, events: Sequence[StepEvent] = ()
    ) -> StepOutcome:
        """An outcome the executor reports when the step could not report itself."""
        return cls(
            task.run_id,
            task.step_key,
            task.attempt,
            events=list(events),
            failure=StepFailure(kind=kind, message=message),
        )


@dataclass(eq=False)
class StepHandle:
    """An in-flight step attempt. Executors subclass it to keep their future/process."""

    task: StepTask
    submitted_at: float = field(default_factory=time.monotonic)


class Executor(ABC):
    """Runs step tasks. Subclasses set ``name`` and ``config_model`` and implement
    ``submit`` / ``wait`` / ``cancel``, plus ``start`` / ``stop`` when they own pools or
    clients. ``with executor:`` starts it; entering it again (a run inside a ``with`` the
    caller keeps open) reuses what is running, so warm workers serve many runs."""

    name: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]
    crosses_processes: ClassVar[bool] = True
    """False only when steps run in the coordinator's process (memory outputs allowed)."""
    requires_code_pointer: ClassVar[bool] = False
    """True when the job must be importable by workers (no pickles through the broker)."""

    on_event: Callable[[StepEvent], None] | None = None
    """Set by the coordinator: where live events (logs while a step runs) are delivered.
    Executors call ``self.deliver(event)`` from any thread."""

    def __init__(self, config: BaseModel | dict[str, Any] | None = None, **kwargs: Any) -> None:
        if isinstance(config, BaseModel):
            self.config = config
        else:
            self.config = self.config_model.model_validate({**(config or {}), **kwargs})

    @property
    def max_concurrent(self) -> int:
        """How many steps the coordinator keeps in flight at once."""
        return int(getattr(self.config, "max_concurrent", None) or 1)

    def deliver(self, event: StepEvent) -> None:
        sink = self.on_event
        if sink is not None:
            sink(event)

    def check_job(self, job: JobDefinition, task_template: StepTask) -> None:  # noqa: B027
        """Before the first step: raise ExecutorError if this job cannot run here."""

    _open_count: int = 0

    def start(self) -> None:  # noqa: B027 - nothing to start by default
        """Start pools, clients, connections."""

    def stop(self) -> None:  # noqa: B027 - nothing to stop by default
        """Stop every pool, client and process ``start`` started."""

    def run_finished(self, run_id: str) -> None:  # noqa: B027
        """A run ended: release what was cached for it (e.g. tear down its resources)."""

    def __enter__(self) -> Executor:
        if self._open_count == 0:
            self.start()
        self._open_count += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._open_count -= 1
        if self._open_count == 0:
            self.stop()

    @abstractmethod
    def submit(self, task: StepTask) -> StepHandle:
        """Start a step attempt without blocking."""

    @abstractmethod
    def wait(self, handles: Sequence[StepHandle], timeout: float | None) -> list[StepOutcome]:
        """Block until at least one handle finished or ``timeout`` passed; return the
        outcomes of finished handles (possibly none on timeout)."""

    @abstractmethod
    def cancel(self, handle: StepHandle) -> None:
        """Stop a step attempt (queued or running); its outcome is no longer expected."""


class EmptyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
