"""``ParquetIOManager``: DataFrames as Parquet files, everything else as ``FsspecIOManager``
stores it.

It is an ``FsspecIOManager`` (same layout, URLs, storage options, atomic writes, preflight,
errors and secret masking) that overrides only its two encoding hooks: ``_encode`` writes
a DataFrame output as a plain Parquet file, without plait's one-line header, so DuckDB,
Spark, Polars or ``pandas.read_parquet`` read the stored outputs directly; and
``_decode_foreign`` reads such a file back. The loader needs no record of which format
was used: a Parquet file starts with the magic ``PAR1``, an object from plait-io's
serializers with its ``plait-io/`` header, so each object says how to read it. Objects
with the header load exactly as ``FsspecIOManager`` loads them (large buffers copy-free,
one GET on S3); a Parquet file comes from the same single read.

The frame is encoded to Parquet in memory first, then written in one atomic write: a
frame Parquet cannot hold fails before storage is touched, and the write is a single
PUT or multipart upload on S3. The cost is the encoded (compressed) size in memory.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any, BinaryIO

import pandas as pd
import pyarrow as pa
from plait_io import OutputContext
from plait_io.fsspec import Encoding, FsspecIOManager

__all__ = ["PARQUET", "ParquetIOManager"]

PARQUET = "parquet"
"""The serializer name recorded for Parquet outputs (``Out(metadata={"serializer": ...})``)."""

_MAGIC = b"PAR1"
_MAX_DTYPES = 100
"""Wider frames report their column count but not every dtype in the event log."""


class ParquetIOManager(FsspecIOManager):
    """Stores DataFrame outputs as Parquet on any fsspec URL (local, ``memory://``, ``s3://``).

    Other outputs go through ``serializer`` (``cloudpickle`` by default), as with
    ``FsspecIOManager``. An output chooses for itself with ``Out(metadata={"serializer":
    "parquet"})`` (a non-DataFrame is then an error) or another serializer name (a
    DataFrame is then stored that way, e.g. to keep object columns Parquet cannot hold).
    ``compression`` is any codec pyarrow knows (``snappy``, ``zstd``, ``gzip``, ``lz4``,
    ``brotli``) or None.
    """

    def __init__(
        self,
        base_url: str | os.PathLike[str],
        storage_options: Mapping[str, Any] | None = None,
        serializer: str = "cloudpickle",
        compression: str | None = "snappy",
    ) -> None:
        super().__init__(base_url, storage_options, serializer)
        self.compression = _check_compression(compression)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "compression": self.compression}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.compression = state.pop("compression", "snappy")
        super().__setstate__(state)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, compression={self.compression!r})"

    # -- FsspecIOManager's encoding hooks ---------------------------------------------

    def _encode(self, context: OutputContext, obj: Any) -> Encoding:
        chosen = context.metadata.get("serializer")
        if chosen != PARQUET and (chosen is not None or not isinstance(obj, pd.DataFrame)):
            return super()._encode(context, obj)  # not a frame, or another format asked
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"output {context.output_name!r} of step {context.step_key!r} asks for "
                f"serializer 'parquet', which stores pandas DataFrames, but the op produced "
                f"{type(obj).__name__}; return a DataFrame or choose another serializer, "
                "e.g. Out(metadata={'serializer': 'cloudpickle'})"
            )
        data = _to_parquet(obj, self.compression, context)
        return Encoding(PARQUET, lambda f: f.write(data), _frame_metadata(obj, len(data)))

    def _decode_foreign(self, file: BinaryIO, url: str) -> Any:
        is_parquet = file.read(len(_MAGIC)) == _MAGIC
        file.seek(0)
        if not is_parquet:
            return super()._decode_foreign(file, url)  # neither Parquet nor plait-io's
        # Fetched bytes (S3, memory): read() hands back the very bytes, without a copy.
        source: Any = pa.BufferReader(file.read()) if isinstance(file, io.BytesIO) else file
        try:
            return pd.read_parquet(source, engine="pyarrow")
        except Exception as exc:
            exc.add_note(f"while reading the Parquet object at {url}")
            raise


def _check_compression(compression: str | None) -> str | None:
    if compression is None or compression.lower() == "none":
        return None
    try:
        available = pa.Codec.is_available(compression)
    except ValueError:  # a name pyarrow has never heard of
        available = False
    if not available:
        raise ValueError(
            f"unknown or unavailable Parquet compression {compression!r}: expected one "
            "of snappy, zstd, gzip, lz4, brotli (as your pyarrow build supports), or None"
        )
    return compression.lower()


def _to_parquet(df: pd.DataFrame, compression: str | None, context: OutputContext) -> bytes:
    try:
        return df.to_parquet(None, engine="pyarrow", compression=compression)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise ValueError(
            f"output {context.output_name!r} of step {context.step_key!r} cannot be stored "
            f"as Parquet: {type(exc).__name__}: {exc}. Give each column one type (e.g. "
            "df[col] = df[col].astype(str)) and unique string names, or store this output "
            "another way: Out(metadata={'serializer': 'cloudpickle'})"
        ) from exc


def _frame_metadata(df: pd.DataFrame, size: int) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "rows": int(df.shape[0]),
        "columns": int(df.shape[1]),
        "bytes": int(size),
    }
    if df.shape[1] <= _MAX_DTYPES:
        meta["dtypes"] = {str(name): str(dtype) for name, dtype in df.dtypes.items()}
    return meta
