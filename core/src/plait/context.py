"""``OpContext``: what an op sees of its run (ids, logger, resources, output metadata)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from plait.events import EventType

log = logging.getLogger("plait.step")
# a library never prints through logging's last-resort handler; the app configures logging
logging.getLogger("plait").addHandler(logging.NullHandler())


class StepLogger:
    """``context.log``: each call becomes a LOG event of the step (and a Python log record
    on the ``plait.step`` logger)."""

    def __init__(self, emit: Callable[..., Any], step_key: str) -> None:
        self._emit = emit
        self._step_key = step_key

    def log(self, level: int, msg: str, *args: Any, exc_info: bool = False, **data: Any) -> None:
        message = msg % args if args else str(msg)
        if exc_info:
            message += "\n" + traceback.format_exc()
        self._emit(EventType.LOG, message, level=level, data=data)
        log.log(level, "[%s] %s", self._step_key, message)

    def debug(self, msg: str, *args: Any, **data: Any) -> None:
        self.log(logging.DEBUG, msg, *args, **data)

    def info(self, msg: str, *args: Any, **data: Any) -> None:
        self.log(logging.INFO, msg, *args, **data)

    def warning(self, msg: str, *args: Any, **data: Any) -> None:
        self.log(logging.WARNING, msg, *args, **data)

    warn = warning

    def error(self, msg: str, *args: Any, **data: Any) -> None:
        self.log(logging.ERROR, msg, *args, **data)

    def exception(self, msg: str, *args: Any, **data: Any) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=True, **data)

    def critical(self, msg: str, *args: Any, **data: Any) -> None:
        self.log(logging.CRITICAL, msg, *args, **data)


class Resources:
    """``context.resources``: attribute access to the run's resources, set up on first use."""

    def __init__(self, getter: Callable[[str], Any], keys: list[str]) -> None:
        self._getter = getter
        self._keys = keys

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        if key not in self._keys:
            raise AttributeError(
                f"no resource {key!r}; this run has {sorted(self._keys)}"
            )
        return self._getter(key)

    def __getitem__(self, key: str) -> Any:
        return self.__getattr__(key)

    def __contains__(self, key: str) -> bool:
        return key in self._keys


class OpContext:
    """Passed to an op parameter named ``context``."""

    def __init__(
        self,
        *,
        run_id: str,
        step_key: str,
        op_name: str,
        retry_number: int,
        mapping_key: str | None,
        log: StepLogger,
        resources: Resources,
        op_config: Any = None,
    ) -> None:
        self.run_id = run_id
        self.step_key = step_key
        self.op_name = op_name
        self.retry_number = retry_number
        self.mapping_key = mapping_key
        self.log = log
        self.resources = resources
        self.op_config = op_config
        self._output_metadata: dict[tuple[str, str | None], dict[str, Any]] = {}

    def add_output_metadata(
        self, metadata: dict[str, Any], output_name: str = "result", mapping_key: str | None = None
    ) -> None:
        """Attach metadata to an output; it appears in that output's STEP_OUTPUT event."""
        self._output_metadata.setdefault((output_name, mapping_key), {}).update(metadata)

    def output_metadata(self, output_name: str, mapping_key: str | None) -> dict[str, Any]:
        merged = dict(self._output_metadata.get((output_name, None), {}))
        if mapping_key is not None:
            merged.update(self._output_metadata.get((output_name, mapping_key), {}))
        return merged

    def __repr__(self) -> str:
        return f"OpContext(run_id={self.run_id!r}, step_key={self.step_key!r})"
