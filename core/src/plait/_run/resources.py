"""Resources of a run as one process sees them: resolved once, set up on first use,
torn down when the run (or the worker's cache of it) is done."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from plait_io import IOManager
from pydantic import PrivateAttr

from plait.config import ConfigurableResource
from plait.errors import ResourceError

IO_MANAGER_KEY = "io_manager"


class InstanceDefaultIO(ConfigurableResource):
    """Stands for the instance's default IO manager while run config is validated, so that
    ``resources.io_manager.config`` is checked (every problem with its path) exactly as
    ``Instance.default_io_manager(config)`` will apply it."""

    _instance: Any = PrivateAttr()

    @classmethod
    def of(cls, instance: Any) -> InstanceDefaultIO:
        stand_in = cls()
        stand_in._instance = instance
        return stand_in

    def with_config(self, overrides: dict[str, Any]) -> Any:
        return self._instance.default_io_manager(overrides)


def resolve_resources(
    base: Mapping[str, Any],
    overrides: Mapping[str, Any] | None,
    resource_config: Mapping[str, Mapping[str, Any]],
    default_io: IOManager | None,
) -> dict[str, Any]:
    """The job's resources, replaced by ``overrides``, configured by run config, plus the
    default IO manager when none is configured. Config was validated by the coordinator."""
    resolved = dict(base)
    resolved.update(overrides or {})
    for key, config in resource_config.items():
        resource = resolved[key]
        if isinstance(resource, ConfigurableResource):
            resolved[key] = resource.with_config(dict(config))
    if IO_MANAGER_KEY not in resolved and default_io is not None:
        resolved[IO_MANAGER_KEY] = default_io
    return resolved


class RunResources:
    """Set-up-on-demand resources for one run in one process."""

    def __init__(self, definitions: Mapping[str, Any]) -> None:
        self.definitions = dict(definitions)
        self._ready: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def keys(self) -> list[str]:
        return list(self.definitions)

    def get(self, key: str) -> Any:
        if key in self._ready:
            return self._ready[key]
        with self._lock:
            if key not in self._ready:
                if key not in self.definitions:
                    raise ResourceError(
                        f"no resource {key!r} in this run; it has {sorted(self.definitions)}. "
                        "Add it to the job's resources={...}"
                    )
                resource = self.definitions[key]
                if isinstance(resource, ConfigurableResource):
                    try:
                        resource.setup()
                    except Exception as exc:
                        raise ResourceError(
                            f"resource {key!r} ({type(resource).__name__}) failed to set up: "
                            f"{type(exc).__name__}: {exc}"
                        ) from exc
                self._ready[key] = resource
            return self._ready[key]

    def io_manager(self, key: str) -> IOManager:
        manager = self.get(key)
        if not isinstance(manager, IOManager):
            raise ResourceError(
                f"resource {key!r} is used as an IO manager but is a "
                f"{type(manager).__name__}; give it a plait_io.IOManager"
            )
        return manager

    def teardown(self) -> list[str]:
        """Tear down what was set up; returns the problems (never raises)."""
        problems = []
        with self._lock:
            for key, resource in reversed(list(self._ready.items())):
                if isinstance(resource, ConfigurableResource):
                    try:
                        resource.teardown()
                    except Exception as exc:  # noqa: BLE001 - report, keep tearing down
                        problems.append(f"resource {key!r} teardown failed: {exc}")
            self._ready.clear()
        return problems
