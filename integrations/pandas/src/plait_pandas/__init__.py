"""plait_pandas: typed DataFrames between steps, stored as Parquet.

- ``DataFrameType(name, columns={...}, strict=False)``: a ``plait.PlaitType`` for op
  annotations; its check lists every problem of a frame (missing or unexpected columns,
  dtypes, nulls, duplicates, negative values, values outside a set).
- ``Column(dtype, nullable, unique, non_negative, isin)``: one column's spec.
- ``ParquetIOManager(base_url, storage_options, serializer, compression)``: an
  ``FsspecIOManager`` that stores DataFrame outputs as plain Parquet files.
- ``ConfigurableParquetIOManager``: the same, configured from run config.

Names load lazily: importing this package imports neither pandas nor pyarrow until a name
is used. ``import plait`` never imports this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_NAMES: dict[str, str] = {
    "Column": "plait_pandas._types",
    "DataFrameType": "plait_pandas._types",
    "Violation": "plait_pandas._types",
    "KINDS": "plait_pandas._types",
    "ParquetIOManager": "plait_pandas._parquet",
    "ConfigurableParquetIOManager": "plait_pandas._configurable",
}

__all__ = [
    "KINDS",
    "Column",
    "ConfigurableParquetIOManager",
    "DataFrameType",
    "ParquetIOManager",
    "Violation",
]


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'plait_pandas' has no attribute {name!r}")
    value = getattr(importlib.import_module(_NAMES[name]), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from plait_pandas._configurable import ConfigurableParquetIOManager
    from plait_pandas._parquet import ParquetIOManager
    from plait_pandas._types import KINDS, Column, DataFrameType, Violation
