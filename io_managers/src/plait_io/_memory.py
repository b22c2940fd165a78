"""Outputs kept in the memory of the process that runs the steps."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from plait_io._base import InputContext, IOManager, OutputContext, StoredOutput

_Key = tuple[str, str, str, "str | None"]


class MemoryIOManager(IOManager):
    """Keeps every output in a dict: fastest, but only for runs whose steps share a process.

    Cross-process executors refuse it before any step runs; re-execution cannot reuse its
    outputs once the process has exited.
    """

    process_local: ClassVar[bool] = True

    def __init__(self) -> None:
        self._values: dict[_Key, Any] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(ctx: OutputContext) -> _Key:
        return (ctx.run_id, ctx.step_key, ctx.output_name, ctx.mapping_key)

    def handle_output(self, context: OutputContext, obj: Any) -> StoredOutput:
        with self._lock:
            self._values[self._key(context)] = obj
        return StoredOutput(location=None)

    def load_input(self, context: InputContext) -> Any:
        key = self._key(context.upstream_output)
        with self._lock:
            if key not in self._values:
                up = context.upstream_output
                raise KeyError(
                    f"no output {up.output_name!r} of step {up.step_key!r} in run "
                    f"{up.run_id!r} is held in memory (outputs of a MemoryIOManager live "
                    "only as long as the process that ran the step)"
                )
            return self._values[key]

    def has_output(self, context: OutputContext) -> bool:
        with self._lock:
            return self._key(context) in self._values

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(
            "a MemoryIOManager cannot be sent to another process: its outputs live in this "
            "process's memory. Configure an FsspecIOManager (the default for a persistent "
            "Instance) to run on a cross-process executor."
        )
