"""How stored objects are turned into bytes, and how a loader knows which way was used.

Every object starts with one header line, the layout version and the serializer::

    plait-io/1 json\\n<payload>                  json, bytes: the serializer's bytes as they are
    plait-io/2 cloudpickle\\n<records>           cloudpickle, pickle: see ``plait_io._layout``

Layout 2 (pickle protocol 5 with large buffers stored raw, out of band) is what
``cloudpickle`` and ``pickle`` write; layout 1 pickles (one in-band pickle stream, as
written before layout 2 existed) still load. A header with a newer layout than this
version knows asks for an upgrade instead of failing obscurely.

The header travels inside the object, so it is written by the same atomic write as the
payload: the loader never has to trust ``Out`` metadata that may have changed since the
object was stored (re-execution loads outputs of a parent run), never lists a directory,
and never reads a second object that could be missing or stale.

Reading is a sans-IO parser (``object_reader``) that asks for bytes by handing out
writable views, so each caller fills them the cheapest way it has: ``read_object`` from
a file, ``plait_io._fetch`` from an S3 response body on fsspec's event loop.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar

import cloudpickle

from plait_io._layout import BufferCallback, Fill, read_records, split_records, write_records

HEADER_PREFIX = b"plait-io/1 "
"""The header of layout 1 (and of every object written before layout 2 existed)."""
LAYOUT = 2
"""The newest layout this version writes and reads."""
_MAX_NAME = 64
_MAX_HEADER = len(b"plait-io/999 ") + _MAX_NAME + 1
_FIRST_READ = 64 * 2**10
"""Read first, with the header: all of a small object, in one read."""
_PROTOCOL = max(5, pickle.HIGHEST_PROTOCOL)  # 5: out-of-band buffers
_HEADER = re.compile(rb"plait-io/([0-9]{1,3}) ([^\s/]{1,%d})\n" % _MAX_NAME)


class Serializer:
    """Writes one object into an open binary file and reads it back.

    ``dump`` writes into the file object as it goes, so large objects stream to storage
    instead of being built as one ``bytes`` first. ``layout`` is the header's version:
    1, the payload is ``dump``'s bytes; 2, pickle records (``PickleSerializer``).
    """

    name: ClassVar[str]
    layout: ClassVar[int] = 1

    def dump(self, obj: Any, file: BinaryIO) -> None:
        raise NotImplementedError

    def load(self, file: BinaryIO) -> Any:
        raise NotImplementedError


class PickleSerializer(Serializer):
    """Standard pickle: objects whose classes are importable where they are loaded.

    Written in layout 2 (protocol 5, large buffers out of band: ``plait_io._layout``);
    ``load`` reads the single in-band pickle of layout 1, as stored before.
    """

    name = "pickle"
    layout = 2

    def dump(self, obj: Any, file: BinaryIO) -> None:
        write_records(file, self.dump_with_buffers, obj)

    def dump_with_buffers(self, obj: Any, file: Any, buffer_callback: BufferCallback) -> None:
        pickle.dump(obj, file, protocol=_PROTOCOL, buffer_callback=buffer_callback)

    def load_with_buffers(self, data: Any, buffers: list[bytearray]) -> Any:
        return pickle.loads(data, buffers=buffers)

    def load(self, file: BinaryIO) -> Any:
        return pickle.load(file)


class CloudpickleSerializer(PickleSerializer):
    """Any Python object, including lambdas and classes defined in ``__main__``."""

    name = "cloudpickle"

    def dump_with_buffers(self, obj: Any, file: Any, buffer_callback: BufferCallback) -> None:
        cloudpickle.dump(obj, file, protocol=_PROTOCOL, buffer_callback=buffer_callback)


class JsonSerializer(Serializer):
    """JSON (UTF-8): readable by people and other tools; tuples come back as lists."""

    name = "json"

    def dump(self, obj: Any, file: BinaryIO) -> None:
        # The C encoder only runs one-shot; JSON outputs are small, readable records.
        file.write(json.dumps(obj, ensure_ascii=False).encode("utf-8"))

    def load(self, file: BinaryIO) -> Any:
        return json.loads(file.read())


class BytesSerializer(Serializer):
    """Raw bytes, stored as they are (after the header line)."""

    name = "bytes"

    def dump(self, obj: Any, file: BinaryIO) -> None:
        if not isinstance(obj, bytes | bytearray | memoryview):
            raise TypeError(
                f"serializer 'bytes' stores bytes-like objects only, got "
                f"{type(obj).__name__}; return bytes from the op or choose another "
                "serializer, e.g. Out(metadata={'serializer': 'cloudpickle'})"
            )
        file.write(obj)

    def load(self, file: BinaryIO) -> Any:
        return file.read()


_SERIALIZERS: dict[str, Serializer] = {
    s.name: s
    for s in (CloudpickleSerializer(), PickleSerializer(), JsonSerializer(), BytesSerializer())
}
SERIALIZER_NAMES: tuple[str, ...] = tuple(sorted(_SERIALIZERS))


def get_serializer(name: str) -> Serializer:
    """The serializer registered under ``name``; a clear error lists the known ones."""
    try:
        return _SERIALIZERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown serializer {name!r}: expected one of {', '.join(SERIALIZER_NAMES)}"
        ) from None


def write_object(file: BinaryIO, serializer: Serializer, obj: Any) -> None:
    """Write the header line, then the payload."""
    file.write(b"plait-io/%d %s\n" % (serializer.layout, serializer.name.encode("ascii")))
    serializer.dump(obj, file)


# -- reading -----------------------------------------------------------------------------


@dataclass
class Stream:
    """Layout 1: the payload is the rest of the object, after ``header_size`` bytes;
    ``spare`` holds the part of it already read with the header."""

    serializer: Serializer
    header_size: int
    spare: bytes

    def load_rest(self, rest: bytes) -> Any:
        return self.serializer.load(io.BytesIO(self.spare + rest if self.spare else rest))


@dataclass
class Pickled:
    """Layout 2, read: the pickle and its out-of-band buffers."""

    serializer: PickleSerializer
    data: Any
    buffers: list[bytearray]

    def load(self) -> Any:
        return self.serializer.load_with_buffers(self.data, self.buffers)


def object_reader(size: int, url: str) -> Fill:
    """Parse a stored object of ``size`` bytes: returns ``Pickled`` (layout 2, read
    whole) or ``Stream`` (layout 1, whose payload the caller reads its own way)."""
    prefix = bytearray(min(size, _FIRST_READ))
    if prefix:
        yield memoryview(prefix)
    if len(prefix) == size:
        return parse_whole(prefix, url)
    serializer, layout, header_size = _parse_header(prefix, url)
    spare = memoryview(prefix)[header_size:]
    if layout == 1:
        return Stream(serializer, header_size, bytes(spare))
    data, buffers = yield from read_records(size - header_size, spare, url)
    return Pickled(_pickler(serializer, layout, url), data, buffers)


def parse_whole(data: bytes | bytearray, url: str) -> Stream | Pickled:
    """Parse an object read whole (a small one, in a single read)."""
    serializer, layout, header_size = _parse_header(data, url)
    payload = memoryview(data)[header_size:]
    if layout == 1:
        return Stream(serializer, header_size, bytes(payload))
    return Pickled(_pickler(serializer, layout, url), *split_records(payload, url))


def read_object(file: BinaryIO, url: str) -> Any:
    """Load the object stored in ``file`` from its current position to its end (a local
    file or a fetched copy: anything seekable with ``readinto``)."""
    start = file.tell()
    try:
        size = os.fstat(file.fileno()).st_size - start
    except (AttributeError, OSError, io.UnsupportedOperation):  # not a real file
        size = file.seek(0, io.SEEK_END) - start
        file.seek(start)
    if size <= _FIRST_READ:
        parsed = parse_whole(file.read(size), url)
        return parsed.load_rest(b"") if isinstance(parsed, Stream) else parsed.load()
    parsed = drive(object_reader(size, url), _file_filler(file, url))
    if isinstance(parsed, Stream):
        file.seek(start + parsed.header_size)  # stream layout 1 pickles from the file
        return parsed.serializer.load(file)
    return parsed.load()


def drive(reader: Fill, fill: Callable[[memoryview], None]) -> Any:
    """Run ``reader`` to its end, filling each view it yields with ``fill``."""
    try:
        view = next(reader)
        while True:
            fill(view)
            view = reader.send(None)
    except StopIteration as done:
        return done.value


def truncated(url: str, missing: int) -> EOFError:
    return EOFError(
        f"{url} ended {missing} bytes early while it was being read (it changed or was "
        "cut short); load it again, or store the output again"
    )


def _file_filler(file: BinaryIO, url: str) -> Callable[[memoryview], None]:
    def fill(view: memoryview) -> None:
        while view:
            n = file.readinto(view)
            if not n:
                raise truncated(url, len(view))
            view = view[n:]

    return fill


class ForeignObjectError(ValueError):
    """A stored object without a plait-io header: not written by ``FsspecIOManager``.

    ``head`` holds the object's first bytes, all that the parser read before it gave up
    (it decides on the header right after its first read, from the object's start), so
    that ``plait_io._fetch`` can hand the whole object to a subclass's decoder without
    reading it again.
    """

    def __init__(self, url: str, head: bytes | bytearray) -> None:
        super().__init__(
            f"{url} was not written by FsspecIOManager: expected it to start with "
            f"{HEADER_PREFIX!r} and a serializer name, found {bytes(head[:32])!r}. Store "
            "outputs through the IO manager, or read this object with your own code."
        )
        self.head = head


def _pickler(serializer: Serializer, layout: int, url: str) -> PickleSerializer:
    if not isinstance(serializer, PickleSerializer):
        raise ValueError(
            f"{url} has a plait-io/{layout} header with serializer {serializer.name!r}, "
            "which only pickle and cloudpickle use; the object is damaged, store it again"
        )
    return serializer


def _parse_header(prefix: bytes | bytearray, url: str) -> tuple[Serializer, int, int]:
    line_end = prefix.find(b"\n", 0, _MAX_HEADER) + 1
    known = _KNOWN_HEADERS.get(bytes(prefix[:line_end]))
    if known is not None:
        return known[0], known[1], line_end
    match = _HEADER.match(prefix)
    if match is None:
        raise ForeignObjectError(url, prefix)
    layout = int(match[1])
    if layout > LAYOUT or layout < 1:
        raise ValueError(
            f"{url} was written in plait-io layout {layout}, which this plait-io "
            f"(layouts 1-{LAYOUT}) cannot read: upgrade plait-io where this output is loaded"
        )
    return get_serializer(match[2].decode("ascii", "replace")), layout, match.end()


_KNOWN_HEADERS: dict[bytes, tuple[Serializer, int]] = {
    b"plait-io/%d %s\n" % (layout, s.name.encode("ascii")): (s, layout)
    for s in _SERIALIZERS.values()
    for layout in range(1, s.layout + 1)
}
"""Every header this version reads, looked up before any parsing (small objects)."""
