"""``ParquetIOManager``: DataFrames as Parquet files, everything else as ``FsspecIOManager``
stores it.

It is an ``FsspecIOManager`` (same layout, URLs, storage options, atomic writes, preflight
and secret masking); only the bytes of a DataFrame output differ. Those are a plain
Parquet file, without plait's one-line header, so DuckDB, Spark, Polars or
``pandas.read_parquet`` read the stored outputs directly. The loader needs no record of
which format was used: a Parquet file starts with the magic ``PAR1``, an object from the
default serializers with ``plait-io/1 ``, so each object says how to read it, as
``plait_io._serializers`` explains.

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
from plait_io import InputContext, OutputContext, OutputNotFoundError, StoredOutput
from plait_io._atomic import open_stored, write_atomic
from plait_io._serializers import read_object
from plait_io.fsspec import FsspecIOManager, _output_path

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

    # -- storing ----------------------------------------------------------------------

    def handle_output(self, context: OutputContext, obj: Any) -> StoredOutput:
        chosen = context.metadata.get("serializer")
        if chosen != PARQUET and (chosen is not None or not isinstance(obj, pd.DataFrame)):
            return super().handle_output(context, obj)  # not a frame, or another format asked
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"output {context.output_name!r} of step {context.step_key!r} asks for "
                f"serializer 'parquet', which stores pandas DataFrames, but the op produced "
                f"{type(obj).__name__}; return a DataFrame or choose another serializer, "
                "e.g. Out(metadata={'serializer': 'cloudpickle'})"
            )
        data = _encode(obj, self.compression, context)
        fs, base_path = self._filesystem()
        location = self.location_for(context)
        try:
            size = write_atomic(fs, f"{base_path}/{_output_path(context)}", lambda f: f.write(data))
        except Exception as exc:
            exc.add_note(
                f"while storing output {context.output_name!r} of step {context.step_key!r} "
                f"at {location} as Parquet"
            )
            raise
        return StoredOutput(location=location, size=size, metadata=_frame_metadata(obj, size))

    # -- loading ----------------------------------------------------------------------

    def load_input(self, context: InputContext) -> Any:
        up = context.upstream_output
        if context.location:
            fs, path, url = self._resolve(context.location)
        else:
            fs, base_path = self._filesystem()
            path, url = f"{base_path}/{_output_path(up)}", self.location_for(up)
        try:
            f = open_stored(fs, path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise OutputNotFoundError(
                url, up.step_key, up.output_name, up.run_id, up.mapping_key
            ) from exc
        with f:
            return _decode(f, url)

    def load_location(self, location: str) -> Any:
        """Load an object by the location ``handle_output`` reported (for inspection)."""
        fs, path, url = self._resolve(location)
        with open_stored(fs, path) as f:
            return _decode(f, url)


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


def _encode(df: pd.DataFrame, compression: str | None, context: OutputContext) -> bytes:
    try:
        return df.to_parquet(None, engine="pyarrow", compression=compression)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise ValueError(
            f"output {context.output_name!r} of step {context.step_key!r} cannot be stored "
            f"as Parquet: {type(exc).__name__}: {exc}. Give each column one type (e.g. "
            "df[col] = df[col].astype(str)) and unique string names, or store this output "
            "another way: Out(metadata={'serializer': 'cloudpickle'})"
        ) from exc


def _decode(f: BinaryIO, url: str) -> Any:
    head = f.read(len(_MAGIC))
    f.seek(0)
    if head != _MAGIC:
        return read_object(f, url)
    # A fetched object (S3, memory) is already bytes: read() returns them without a copy.
    source: Any = pa.BufferReader(f.read()) if isinstance(f, io.BytesIO) else f
    try:
        return pd.read_parquet(source, engine="pyarrow")
    except Exception as exc:
        exc.add_note(f"while reading the Parquet object at {url}")
        raise


def _frame_metadata(df: pd.DataFrame, size: int) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "serializer": PARQUET,
        "rows": int(df.shape[0]),
        "columns": int(df.shape[1]),
        "bytes": int(size),
    }
    if df.shape[1] <= _MAX_DTYPES:
        meta["dtypes"] = {str(name): str(dtype) for name, dtype in df.dtypes.items()}
    return meta
