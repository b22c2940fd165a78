"""Every error plait raises on purpose derives from ``PlaitError``::

    PlaitError
    ├── PlaitDefinitionError      a graph, op or job is built wrong (raised at definition time)
    ├── RunConfigError            run config does not validate; lists every problem with its path
    ├── ResourceError             a resource failed to set up, or a required one is missing
    ├── ExecutorError             executor unknown, not installed, misconfigured, or its engine failed
    │   └── ExecutorNotInstalledError  the plugin that provides the executor is not installed
    ├── StorageError              the run storage or an IO location is unusable
    ├── PlaitStepError            a step failed and ``raise_on_error=True`` (cross-process form)
    ├── TypeCheckError            an op input or output failed its type check
    └── RunCanceledError          the run was canceled and ``raise_on_error=True``

Errors raised by op code reach the user unchanged when a step runs in-process; from other
processes they arrive as ``PlaitStepError`` carrying the remote type and stack trace.
"""

from __future__ import annotations


class PlaitError(Exception):
    """Root of every error plait raises on purpose."""


class PlaitDefinitionError(PlaitError):
    """A graph, op or job definition is wrong; the message names the op and the fix."""


class RunConfigError(PlaitError):
    """Run config failed validation. ``errors`` holds one ``path: problem`` line each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = sorted(errors)
        lines = "\n".join(f"  {line}" for line in self.errors)
        super().__init__(f"run config is invalid ({len(self.errors)} problem(s)):\n{lines}")


class ResourceError(PlaitError):
    """A resource is missing or its setup failed."""


class ExecutorError(PlaitError):
    """The executor is unknown, misconfigured, or its engine failed the run."""


class ExecutorNotInstalledError(ExecutorError):
    """The executor exists but the package that provides it is not installed."""


class StorageError(PlaitError):
    """Run storage or an output location is unusable."""


class PlaitStepError(PlaitError):
    """A step failed in another process; carries the remote error type and stack trace."""

    def __init__(self, step_key: str, message: str, error_type: str | None, stack: str | None):
        self.step_key = step_key
        self.error_type = error_type
        self.stack = stack
        super().__init__(f"step {step_key!r} failed: {message}")


class TypeCheckError(PlaitError):
    """An op input or output failed its runtime type check (not retried: it is
    deterministic)."""


class RunCanceledError(PlaitError):
    """The run was canceled before it finished."""
