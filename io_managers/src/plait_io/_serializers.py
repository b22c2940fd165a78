"""How stored objects are turned into bytes, and how a loader knows which way was used.

Every object starts with one header line naming its serializer::

    plait-io/1 cloudpickle\\n<payload>

The header travels inside the object, so it is written by the same atomic write as the
payload: the loader never has to trust ``Out`` metadata that may have changed since the
object was stored (re-execution loads outputs of a parent run), never lists a directory,
and never reads a second object that could be missing or stale.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, BinaryIO, ClassVar

import cloudpickle

HEADER_PREFIX = b"plait-io/1 "
_MAX_NAME = 64


class Serializer:
    """Writes one object into an open binary file and reads it back.

    ``dump`` writes into the file object as it goes, so large objects stream to storage
    instead of being built as one ``bytes`` first.
    """

    name: ClassVar[str]

    def dump(self, obj: Any, file: BinaryIO) -> None:
        raise NotImplementedError

    def load(self, file: BinaryIO) -> Any:
        raise NotImplementedError


class CloudpickleSerializer(Serializer):
    """Any Python object, including lambdas and classes defined in ``__main__``."""

    name = "cloudpickle"

    def dump(self, obj: Any, file: BinaryIO) -> None:
        cloudpickle.dump(obj, file, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, file: BinaryIO) -> Any:
        return pickle.load(file)


class PickleSerializer(Serializer):
    """Standard pickle: objects whose classes are importable where they are loaded."""

    name = "pickle"

    def dump(self, obj: Any, file: BinaryIO) -> None:
        pickle.dump(obj, file, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, file: BinaryIO) -> Any:
        return pickle.load(file)


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
    file.write(HEADER_PREFIX + serializer.name.encode("ascii") + b"\n")
    serializer.dump(obj, file)


def read_object(file: BinaryIO, url: str) -> Any:
    """Read the header line, then load the payload with the serializer it names."""
    line = file.readline(len(HEADER_PREFIX) + _MAX_NAME + 1)
    name = line[len(HEADER_PREFIX) : -1]
    if not (line.startswith(HEADER_PREFIX) and line.endswith(b"\n") and name):
        raise ValueError(
            f"{url} was not written by FsspecIOManager: expected it to start with "
            f"{HEADER_PREFIX!r} and a serializer name, found {line[:32]!r}. Store "
            "outputs through the IO manager, or read this object with your own code."
        )
    return get_serializer(name.decode("ascii", "replace")).load(file)
