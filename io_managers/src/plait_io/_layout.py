"""The ``plait-io/2`` layout: a pickle whose large buffers are stored next to it, raw.

Pickle protocol 5 can hand large buffers (a numpy array's data, a pandas column) to a
``buffer_callback`` instead of copying them into the pickle stream. In-band, every such
buffer is copied once more on each side: the pickler turns it into ``bytes`` before
writing, the unpickler into a fresh ``bytearray``. Out of band, the store writes the
array's own memory to the file, and the load reads each buffer straight into the
writable ``bytearray`` the array will live in, so a stored array costs what writing and
reading its bytes costs, and it loads writable (users and pandas mutate inputs in place).

After the header line (``plait-io/2 cloudpickle``) the object is a sequence of records,
each a 9-byte head, one kind byte and the payload length (unsigned 64-bit,
little-endian), then the payload::

    P <n> <n bytes>   the next piece of the pickle stream (each pickler write, in order)
    B <n> <n bytes>   one out-of-band buffer, in the order the pickle consumes them
    E 0               the end; nothing follows

The pickle streams into the file as it is made and each buffer is written while it is
pickled, so a large object is never built whole in memory first. Readers need no index
up front: the pickle is the concatenation of the ``P`` payloads and the buffers are the
``B`` payloads, in order. Buffers under ``OUT_OF_BAND_MIN`` stay in the pickle, where
they cost nothing worth avoiding and keep many small arrays from becoming many records.
"""

from __future__ import annotations

import functools
import pickle
import struct
from collections.abc import Callable, Generator
from typing import Any, BinaryIO

OUT_OF_BAND_MIN = 64 * 2**10
"""Buffers at least this large are stored out of band (pickle's own "large" size)."""

_HEAD = struct.Struct("<cQ")
PICKLE, BUFFER, END = b"P", b"B", b"E"

Fill = Generator[memoryview, None, Any]
"""A reader that yields writable views, each to be filled completely with the object's
next bytes before it is resumed; it returns what it read (a sans-IO parser, driven by
a local file, a fetched copy, or an S3 response body read on fsspec's event loop)."""

BufferCallback = Callable[[pickle.PickleBuffer], bool]
Dumper = Callable[[Any, Any, BufferCallback], None]


class _RecordWriter:
    """The file the pickler writes to: every write becomes a ``P`` record, every large
    buffer it offers a ``B`` record written at once from the buffer's own memory."""

    __slots__ = ("_file",)

    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def write(self, data: Any) -> int:
        size = len(data) if isinstance(data, bytes) else memoryview(data).nbytes
        if size:
            self._file.write(_HEAD.pack(PICKLE, size))
            self._file.write(data)
        return size

    def keep_in_band(self, buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: leave it to pickle, which says so
            return True
        with raw:
            if raw.nbytes < OUT_OF_BAND_MIN:
                return True
            self._file.write(_HEAD.pack(BUFFER, raw.nbytes))
            self._file.write(raw)
        return False


def write_records(file: BinaryIO, dump: Dumper, obj: Any) -> None:
    """Pickle ``obj`` with ``dump(obj, file, buffer_callback)`` into records on ``file``."""
    writer = _RecordWriter(file)
    dump(obj, writer, writer.keep_in_band)
    file.write(_HEAD.pack(END, 0))


def split_records(view: memoryview, url: str) -> tuple[Any, list[bytearray]]:
    """``(pickle data, buffers)`` from the records of an object read whole (small ones,
    read in one go with their header); pickle pieces are views, buffers copies."""
    pieces: list[Any] = []
    buffers: list[bytearray] = []
    end, pos = len(view), 0
    while True:
        if end - pos < _HEAD.size:
            raise _corrupt(url, "it ends inside a record head")
        kind, size = _HEAD.unpack_from(view, pos)
        pos += _HEAD.size
        if kind == END:
            break
        _check(kind, size, end - pos, url)
        piece = view[pos : pos + size]
        pos += size
        if kind == PICKLE:
            pieces.append(piece)
        else:
            buffers.append(bytearray(piece))
    if pos != end:
        raise _corrupt(url, f"{end - pos} bytes follow the end record")
    return _joined(pieces), buffers


def read_records(remaining: int, spare: memoryview, url: str) -> Fill:
    """Read the records after the header, ``remaining`` bytes of which ``spare`` were
    read already; return ``(pickle data, buffers)``, each buffer a ``bytearray`` of its
    own that the driver fills directly."""
    pieces: list[bytearray] = []
    buffers: list[bytearray] = []
    head = bytearray(_HEAD.size)
    while True:
        remaining -= _HEAD.size
        if remaining < 0:
            raise _corrupt(url, "it ends inside a record head")
        spare = yield from _fill(memoryview(head), spare)
        kind, size = _HEAD.unpack(head)
        if kind == END:
            break
        _check(kind, size, remaining, url)
        remaining -= size
        piece = new_buffer(size)
        spare = yield from _fill(memoryview(piece), spare)
        (pieces if kind == PICKLE else buffers).append(piece)
    if remaining:
        raise _corrupt(url, f"{remaining} bytes follow the end record")
    return _joined(pieces), buffers


def _fill(target: memoryview, spare: memoryview) -> Generator[memoryview, None, memoryview]:
    """Fill ``target`` from ``spare`` first, then from the driver; return what is left
    of ``spare``."""
    taken = min(len(spare), len(target))
    if taken:
        target[:taken] = spare[:taken]
    if taken < len(target):
        yield target[taken:]
    return spare[taken:]


def new_buffer(size: int) -> bytearray:
    """A ``bytearray`` of ``size`` bytes that the caller overwrites whole at once.

    A large one is left uninitialized, the way pickle's own loader allocates its
    ``bytearray`` payloads: zeroing 100 MB first would cost about 8% of reading it."""
    return bytearray(size) if size < OUT_OF_BAND_MIN else _uninitialized()(size)


@functools.cache
def _uninitialized() -> Callable[[int], bytearray]:
    try:
        import ctypes

        prototype = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_char_p, ctypes.c_ssize_t)
        from_string = prototype(("PyByteArray_FromStringAndSize", ctypes.pythonapi))
    except (ImportError, AttributeError):  # not CPython: zeroed, a little slower
        return bytearray
    return lambda size: from_string(None, size)  # NULL source: nothing copied, nothing zeroed


def _check(kind: bytes, size: int, remaining: int, url: str) -> None:
    if kind not in (PICKLE, BUFFER) or size > remaining:
        raise _corrupt(url, f"record {kind!r} of {size} bytes with {remaining} left")


def _joined(pieces: list[Any]) -> Any:
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _corrupt(url: str, detail: str) -> ValueError:
    return ValueError(
        f"{url} is damaged: it starts with a plait-io/2 header, but {detail}. "
        "Store the output again (re-execute the step that made it)."
    )
