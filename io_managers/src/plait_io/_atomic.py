"""Atomic writes on fsspec filesystems: an object appears whole, or not at all.

Each backend gets the cheapest write that still has that property:

- local files: stream into a hidden temp file in the target directory, then
  ``os.replace`` (a rename within one directory is atomic on POSIX and Windows);
- ``memory://``: stream into a ``MemoryFile`` that is not in the store yet, then commit it
  with one dict assignment (``MemoryFileSystem.open("wb")`` would publish the empty file
  at once);
- S3: s3fs sends a small object as one PUT and a large one as a multipart upload that
  only exists once ``CompleteMultipartUpload`` is sent, which ``close()`` does. On error we
  ``discard()`` (abort the upload) and mark the file closed so that neither ``__exit__``
  nor ``__del__`` completes a half-written upload. A killed process never completes it;
- anything else: write a hidden temp sibling, then ``fs.mv`` it into place.

Temp names start with ``.`` and end with ``.tmp``; layout segments never start with ``.``
(see ``plait_io.fsspec``), so a leftover temp file can never be mistaken for an output.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import BinaryIO

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem

Dump = Callable[[BinaryIO], None]

_COMMIT_ON_CLOSE = frozenset({"s3", "s3a"})


def write_atomic(fs: AbstractFileSystem, path: str, dump: Dump) -> int:
    """Write what ``dump`` writes to ``path`` atomically; return the stored size in bytes."""
    if isinstance(fs, LocalFileSystem):
        return _write_local(path, dump)
    if isinstance(fs, MemoryFileSystem):
        return _write_memory(fs, path, dump)
    if is_s3(fs):
        return _write_commit_on_close(fs, path, dump)
    return _write_then_move(fs, path, dump)


def is_s3(fs: AbstractFileSystem) -> bool:
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    return bool(protocols & _COMMIT_ON_CLOSE)


def open_stored(fs: AbstractFileSystem, path: str) -> BinaryIO:
    """A readable, seekable file over a stored object; ``FileNotFoundError`` if there is
    none. (``plait_io._fetch`` reads S3 without this copy.)

    Local files stream from disk. Elsewhere the whole object is read in one ranged GET
    (``open`` then ``read()``): streaming ``pickle.load`` through s3fs's readahead cache
    fetches blocks twice and runs several times slower. ``memory://`` hands out one
    shared file object per path, so it is copied with ``cat_file`` instead.
    """
    if isinstance(fs, LocalFileSystem):
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    if isinstance(fs, MemoryFileSystem):
        return io.BytesIO(fs.cat_file(path))
    with fs.open(path, "rb") as f:
        return io.BytesIO(f.read())


def temp_name(path: str) -> str:
    """A hidden sibling of ``path`` that no other writer will pick."""
    parent, _, name = path.rpartition("/")
    return f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"


def _write_local(path: str, dump: Dump) -> int:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = temp_name(path)
    try:
        # "xb": created with the umask's permissions, and never someone else's file.
        with open(tmp, "xb") as f:
            dump(f)
            size = f.tell()
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    return size


def _write_memory(fs: MemoryFileSystem, path: str, dump: Dump) -> int:
    path = fs._strip_protocol(path)
    f = MemoryFile(fs, path)
    dump(f)
    size = f.tell()
    f.commit()  # fs.store[path] = f: readers see the old object or the whole new one
    return size


def _write_commit_on_close(fs: AbstractFileSystem, path: str, dump: Dump) -> int:
    f = fs.open(path, "wb")
    try:
        dump(f)
        size = f.tell()
    except BaseException:
        with suppress(Exception):  # abort the multipart upload; keep the first error
            f.discard()
        f.closed = True  # so that neither __del__ nor close() commits what was written
        raise
    f.close()
    return size


def _write_then_move(fs: AbstractFileSystem, path: str, dump: Dump) -> int:
    tmp = temp_name(path)
    fs.makedirs(fs._parent(path), exist_ok=True)
    try:
        with fs.open(tmp, "wb") as f:
            dump(f)
            size = f.tell()
        fs.mv(tmp, path)
    except BaseException:
        with suppress(Exception):
            fs.rm_file(tmp)
        raise
    return size
