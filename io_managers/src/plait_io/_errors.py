"""Errors an IO manager raises that the run loop can recognise and explain.

    OSError
     ├── StorageUnavailableError    preflight: the base URL cannot be reached or written
     └── FileNotFoundError
          └── OutputNotFoundError   load_input: the upstream object is not stored

Both subclass the builtin ``OSError`` family so that code which already handles storage
errors keeps working, and both pickle with their attributes so that a worker can send
them back to the coordinator.
"""

from __future__ import annotations

from typing import Any


class StorageUnavailableError(OSError):
    """The storage behind an IO manager is not reachable or not writable.

    ``url`` is the base URL (secrets masked) and ``cause`` a short phrase such as
    ``"no such bucket"`` or ``"connection refused or no network"``.
    """

    def __init__(self, url: str, cause: str, hint: str = "") -> None:
        message = f"storage at {url} is unavailable: {cause}"
        if hint:
            message += f". {hint}"
        super().__init__(message)
        self.url = url
        self.cause = cause
        self.hint = hint

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.url, self.cause, self.hint)


class OutputNotFoundError(FileNotFoundError):
    """``load_input`` found no stored object for the upstream output it was asked for."""

    def __init__(
        self,
        url: str,
        step_key: str,
        output_name: str,
        run_id: str,
        mapping_key: str | None = None,
    ) -> None:
        what = f"output {output_name!r}"
        if mapping_key is not None:
            what += f" (mapping key {mapping_key!r})"
        message = (
            f"{what} of step {step_key!r} from run {run_id!r} is not stored at {url}: "
            "the step never stored it (it failed, was skipped or has not run yet) or the "
            "object was deleted. Re-execute the run including that step, or check that "
            "the IO manager points at the storage the producing run used."
        )
        super().__init__(message)
        self.url = url
        self.step_key = step_key
        self.output_name = output_name
        self.run_id = run_id
        self.mapping_key = mapping_key

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (
            self.url,
            self.step_key,
            self.output_name,
            self.run_id,
            self.mapping_key,
        )
