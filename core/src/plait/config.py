"""Typed configuration for ops (``Config``) and resources (``ConfigurableResource``).

Both are pydantic v2 models that reject unknown fields, so a typo in run config is an
error with its path rather than a silently ignored key.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Config(BaseModel):
    """Subclass to declare an op's config; annotate an op parameter with the subclass.

    >>> class LoadConfig(Config):
    ...     rows: int = 10
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigurableResource(BaseModel):
    """A resource (database, client, ...) with typed config, shared by the ops that use it.

    Override ``setup`` to open connections and ``teardown`` to close them; plait calls
    them once per run in each process that runs steps needing the resource. Keep live
    handles in pydantic private attributes (``_conn: Any = PrivateAttr(None)``).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    def setup(self) -> None:
        """Called before the first step that uses this resource."""

    def teardown(self) -> None:
        """Called when the run (or the worker's cache of it) is done."""

    def with_config(self, overrides: dict[str, Any]) -> ConfigurableResource:
        """A new instance with ``overrides`` validated on top of this one's fields."""
        return type(self).model_validate({**self.model_dump(), **overrides})
