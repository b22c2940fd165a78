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

from plait import ConfigurableFsspecIOManager
from pydantic import field_validator

from plait_pandas._parquet import ParquetIOManager, _check_compression

__all__ = ["ConfigurableParquetIOManager"]


class ConfigurableParquetIOManager(ConfigurableFsspecIOManager):
    """``ParquetIOManager`` settings as a resource: ``ConfigurableFsspecIOManager``'s
    ``base_url``, ``storage_options`` and ``serializer`` (for non-DataFrame outputs), plus
    ``compression``. A local ``base_url`` is made absolute where the config is validated,
    so it names the same folder in every worker process of this machine.
    """

    compression: str | None = "snappy"

    @field_validator("compression")
    @classmethod
    def _known_codec(cls, compression: str | None) -> str | None:
        return _check_compression(compression)

    def _make_manager(self) -> ParquetIOManager:
        return ParquetIOManager(
            self.base_url, self.storage_options, self.serializer, self.compression
        )

    @property
    def manager(self) -> ParquetIOManager:
        """The ``ParquetIOManager`` doing the work (e.g. for ``load_location``)."""
        return self._manager  # type: ignore[return-value]
