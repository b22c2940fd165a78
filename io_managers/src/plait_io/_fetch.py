"""Loading a stored object with no more copying than raw fsspec does.

Raw fsspec loads a 100 MB array by reading the object's bytes (``f.read()``, one copy out
of the network or page cache) and wrapping them (``np.frombuffer``, read-only). Loading
through plait must hand back a *writable* array for the same price, so every byte is
copied exactly once, into the memory the loaded object will keep:

- local files: ``readinto`` each record of a layout-2 object straight from the file into
  its buffer; layout-1 pickles stream through ``pickle.load`` as before;
- S3: one GET (no HEAD first: the size is the response's Content-Length), whose body is
  read on fsspec's event loop straight into the buffers with ``readinto``, instead of
  being joined into one ``bytes`` (s3fs's ``cat_file``/``read``) and copied again;
- anything else (``memory://``, other fsspec URLs): a fetched copy (``open_stored``),
  then as a local file.

An object without a plait-io header (``ForeignObjectError``) goes to the caller's
``foreign`` decoder, if it gave one, from the same read: the open local file or fetched
copy, or on S3 the rest of the same GET's body after the bytes already read.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from plait_io._atomic import is_s3, open_stored
from plait_io._serializers import (
    ForeignObjectError,
    Pickled,
    Stream,
    object_reader,
    read_object,
    truncated,
)

Decode = Callable[[BinaryIO, str], Any]
"""Loads an object without a plait-io header from a readable, seekable binary file at its
start (a local file, or the object's bytes in an ``io.BytesIO``), given its URL."""


class Fetched(Protocol):
    def load(self) -> Any:
        """Build the object (unpickle); errors here are the object's, not storage's."""


def fetch_stored(
    fs: AbstractFileSystem, path: str, url: str, foreign: Decode | None = None
) -> Fetched:
    """The object stored at ``path``, ready to ``load()``; ``FileNotFoundError`` (or
    ``IsADirectoryError``) if there is none. One without a plait-io header loads with
    ``foreign``, or without it fails with ``ForeignObjectError``."""
    if isinstance(fs, LocalFileSystem):
        return _File(open(path, "rb"), url, foreign)  # noqa: SIM115 - closed by load()
    if is_s3(fs) and hasattr(fs, "_call_s3"):
        from fsspec.asyn import sync  # s3fs imported it already

        return sync(fs.loop, _read_s3, fs, path, url, foreign)
    return _File(open_stored(fs, path), url, foreign)


class _File:
    """An open local file or fetched copy; read when loaded."""

    def __init__(self, file: BinaryIO, url: str, foreign: Decode | None = None) -> None:
        self.file, self.url, self.foreign = file, url, foreign

    def load(self) -> Any:
        with self.file:
            try:
                return read_object(self.file, self.url)
            except ForeignObjectError:
                if self.foreign is None:
                    raise
            self.file.seek(0)  # outside the except: its errors are not "during" that one
            return self.foreign(self.file, self.url)


class _Foreign:
    """An object without a plait-io header, read whole: loaded by the given decoder."""

    def __init__(self, decode: Decode, data: bytes, url: str) -> None:
        self.decode, self.data, self.url = decode, data, url

    def load(self) -> Any:
        return self.decode(io.BytesIO(self.data), self.url)


class _Loaded:
    """A layout-1 object read whole: loaded by its serializer from memory."""

    def __init__(self, stream: Stream, rest: bytes) -> None:
        self.stream, self.rest = stream, rest

    def load(self) -> Any:
        return self.stream.load_rest(self.rest)


async def _read_s3(
    fs: Any, path: str, url: str, foreign: Decode | None
) -> Pickled | _Loaded | _Foreign:
    """GET the object and read its body into the buffers the parser hands out; runs on
    fsspec's event loop (unpickling is left to the caller's thread). A connection lost
    mid-body is retried the way s3fs retries its own reads."""
    args = (fs, path, url, foreign)
    try:
        from s3fs.core import _error_wrapper
    except ImportError:  # an s3fs without it: no retries
        return await _get_and_read(*args)
    return await _error_wrapper(_get_and_read, args=args, retries=fs.retries)


async def _get_and_read(
    fs: Any, path: str, url: str, foreign: Decode | None
) -> Pickled | _Loaded | _Foreign:
    bucket, key, version_id = fs.split_path(path)
    extra = {"VersionId": version_id} if version_id else {}
    response = await fs._call_s3("get_object", Bucket=bucket, Key=key, **extra)
    body = response["Body"]
    try:
        reader = object_reader(response["ContentLength"], url)
        try:
            view = next(reader)
            while True:
                await _fill(body, view, url)
                view = reader.send(None)
        except StopIteration as done:
            parsed = done.value
        except ForeignObjectError as exc:
            if foreign is None:
                raise
            return _Foreign(foreign, bytes(exc.head) + await body.read(), url)
        if isinstance(parsed, Stream):
            return _Loaded(parsed, await body.read())
        # The parser stopped at the last byte; reading the (empty) rest lets the body
        # check its length and checksum, as a full read would.
        await body.readinto(bytearray(1))
        return parsed
    finally:
        body.close()


async def _fill(body: Any, view: memoryview, url: str) -> None:
    while view:
        n = await body.readinto(view)
        if not n:
            raise truncated(url, len(view))
        view = view[n:]
