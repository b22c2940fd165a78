"""``ConfigurableParquetIOManager``: a ``ParquetIOManager`` whose settings come from run config.

Core configures only ``ConfigurableResource`` resources from ``resources.<key>.config``,
and uses only ``IOManager`` resources as IO managers; this class is both, and hands every
call to a ``ParquetIOManager`` built from its fields. So the storage of a job can move
from a laptop folder to S3 with run config alone::

    resources:
      io_manager:
        config: {base_url: "s3://bucket/etl", storage_options: {anon: false}}
"""

from __future__ import annotations

from typing import Any

from plait import ConfigurableResource
from plait_io import InputContext, IOManager, OutputContext, StoredOutput, check_serializer
from pydantic import Field, PrivateAttr, field_validator, model_validator

from plait_pandas._parquet import ParquetIOManager, _check_compression

__all__ = ["ConfigurableParquetIOManager"]


class ConfigurableParquetIOManager(ConfigurableResource, IOManager):
    """``ParquetIOManager`` settings as a resource: ``base_url``, ``storage_options``,
    ``serializer`` (for non-DataFrame outputs) and ``compression``.

    A local ``base_url`` is made absolute where the config is validated, so it names the
    same folder in every worker process of this machine.
    """

    base_url: str
    storage_options: dict[str, Any] = Field(default_factory=dict)
    serializer: str = "cloudpickle"
    compression: str | None = "snappy"

    _manager: ParquetIOManager = PrivateAttr()

    @field_validator("serializer")
    @classmethod
    def _known_serializer(cls, name: str) -> str:
        # ValueError -> reported at resources.<key>.config.serializer
        return check_serializer(name)

    @field_validator("compression")
    @classmethod
    def _known_codec(cls, compression: str | None) -> str | None:
        return _check_compression(compression)

    @model_validator(mode="after")
    def _build(self) -> ConfigurableParquetIOManager:
        manager = ParquetIOManager(
            self.base_url, self.storage_options, self.serializer, self.compression
        )
        self.base_url = manager.base_url
        self._manager = manager
        return self

    @property
    def manager(self) -> ParquetIOManager:
        """The ``ParquetIOManager`` doing the work (e.g. for ``load_location``)."""
        return self._manager

    def handle_output(self, context: OutputContext, obj: Any) -> StoredOutput:
        return self._manager.handle_output(context, obj)

    def load_input(self, context: InputContext) -> Any:
        return self._manager.load_input(context)

    def preflight(self) -> None:
        self._manager.preflight()

    def describe(self) -> str:
        return self._manager.describe()

    def __repr__(self) -> str:
        # never pydantic's repr: it would print storage_options secrets as they are
        return f"{type(self).__name__}({self._manager!r})"

    __str__ = __repr__
