"""The pickle layout (``plait-io/2``): large buffers stored raw, loaded writable, on every
storage; objects written in layout 1 still load."""

from __future__ import annotations

import pickle
import struct
from typing import Any

import cloudpickle
import fsspec
import pytest
from plait_io._layout import OUT_OF_BAND_MIN

from tests.io._storage import Storage, input_for, output

BIG = OUT_OF_BAND_MIN * 3 + 5  # out of band, and not a multiple of anything
SMALL = OUT_OF_BAND_MIN // 2  # stays in the pickle
HEAD = struct.Struct("<cQ")


class Blob:
    """A bytes-like payload that pickles its memory through ``PickleBuffer`` (as numpy
    arrays do), so the tests need no numpy."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: int) -> Any:
        if protocol < 5:
            return Blob, (bytes(self.data),)
        return Blob, (pickle.PickleBuffer(self.data),)


def _records(raw: bytes, header: bytes) -> list[tuple[bytes, bytes]]:
    """The (kind, payload) records of a stored layout-2 object."""
    assert raw.startswith(header)
    records, pos = [], len(header)
    while True:
        kind, size = HEAD.unpack_from(raw, pos)
        pos += HEAD.size
        records.append((kind, raw[pos : pos + size]))
        pos += size
        if kind == b"E":
            assert pos == len(raw)
            return records


def _read_raw(storage: Storage, location: str) -> bytes:
    with fsspec.open(location, "rb", **storage.options_for(location)) as f:
        return f.read()


def _write_raw(storage: Storage, location: str, data: bytes) -> None:
    fs, path = fsspec.core.url_to_fs(location, **storage.options_for(location))
    fs.makedirs(fs._parent(path), exist_ok=True)
    fs.pipe_file(path, data)


@pytest.mark.parametrize("serializer", ["cloudpickle", "pickle"])
def test_large_buffers_are_stored_raw_after_the_pickle_header(
    storage: Storage, serializer: str
) -> None:
    big, small = bytearray(b"\x01\x02" * (BIG // 2)) + b"!", bytearray(b"s" * SMALL)
    manager = storage.manager(serializer=serializer)
    stored = manager.handle_output(output(), {"big": Blob(big), "small": Blob(small)})

    raw = _read_raw(storage, stored.location)
    assert stored.size == len(raw)
    records = _records(raw, b"plait-io/2 %s\n" % serializer.encode())
    kinds = [kind for kind, _ in records]
    assert kinds.count(b"B") == 1 and kinds[-1] == b"E" and b"P" in kinds
    assert [payload for kind, payload in records if kind == b"B"] == [big]  # raw bytes
    pickled = b"".join(payload for kind, payload in records if kind == b"P")
    assert b"s" * SMALL in pickled  # small buffers stay in the pickle

    loaded = manager.load_input(input_for(output()))
    assert loaded["big"].data == big and loaded["small"].data == small


def test_loaded_buffers_are_writable_and_own_their_memory(storage: Storage) -> None:
    manager = storage.manager()
    first, second = bytearray(b"a" * BIG), bytearray(b"b" * BIG)
    manager.handle_output(output(), [Blob(first), Blob(second), Blob(bytearray(b"c" * SMALL))])

    loaded = manager.load_input(input_for(output()))
    for blob, expected in zip(loaded, (first, second, b"c" * SMALL), strict=True):
        view = memoryview(blob.data)
        assert not view.readonly
        view[0] = ord("z")  # mutating one input in place leaves the others alone
        assert bytes(view[1:]) == expected[1:]
    assert bytes(loaded[1].data[:1]) == b"z"
    assert isinstance(loaded[0].data, bytearray)  # its own buffer, not a view of a bigger one


def test_read_only_buffers_load_read_only(storage: Storage) -> None:
    manager = storage.manager()
    manager.handle_output(output(), Blob(bytes(BIG)))  # bytes: a read-only buffer

    loaded = manager.load_input(input_for(output()))
    assert memoryview(loaded.data).readonly
    assert bytes(loaded.data) == bytes(BIG)


def test_numpy_arrays_load_writable_and_equal(storage: Storage) -> None:
    np = pytest.importorskip("numpy")
    values = {
        "c": np.arange(BIG // 8, dtype=np.float64),
        "fortran": np.asfortranarray(np.arange(7 * 5000, dtype=np.int32).reshape(7, 5000)),
        "small": np.arange(10),
        "strided": np.arange(BIG // 4)[::3],  # not contiguous: numpy pickles a copy
    }
    frozen = np.arange(BIG // 8)
    frozen.flags.writeable = False
    manager = storage.manager()
    manager.handle_output(output(), {**values, "frozen": frozen})

    loaded = manager.load_input(input_for(output()))
    for name, array in values.items():
        assert loaded[name].dtype == array.dtype and np.array_equal(loaded[name], array), name
        assert loaded[name].flags.writeable, name
        loaded[name][0] += 1  # users mutate inputs in place
    assert loaded["fortran"].flags.f_contiguous
    assert not loaded["frozen"].flags.writeable and np.array_equal(loaded["frozen"], frozen)


@pytest.mark.parametrize("serializer", ["cloudpickle", "pickle"])
def test_objects_in_layout_1_still_load(storage: Storage, serializer: str) -> None:
    """Outputs stored before layout 2 (one in-band pickle after ``plait-io/1``) load,
    e.g. when a re-execution reads its parent run's outputs."""
    value = {"rows": [1, 2.5, None], "blob": Blob(bytearray(b"q" * BIG)), "text": "é"}
    module = cloudpickle if serializer == "cloudpickle" else pickle
    old = b"plait-io/1 %s\n" % serializer.encode() + module.dumps(value, protocol=5)
    manager = storage.manager()
    location = manager.location_for(output())
    _write_raw(storage, location, old)

    loaded = manager.load_input(input_for(output()))
    assert loaded["rows"] == value["rows"] and loaded["text"] == "é"
    assert loaded["blob"].data == b"q" * BIG and not memoryview(loaded["blob"].data).readonly
    assert manager.load_location(location)["text"] == "é"


def test_a_newer_layout_asks_for_an_upgrade(storage: Storage) -> None:
    manager = storage.manager()
    _write_raw(storage, manager.location_for(output()), b"plait-io/3 cloudpickle\n...")
    with pytest.raises(ValueError, match="layout 3.*upgrade plait-io"):
        manager.load_input(input_for(output()))


def test_a_cut_short_object_names_its_url(storage: Storage) -> None:
    manager = storage.manager()
    stored = manager.handle_output(output(), Blob(bytearray(BIG)))
    raw = _read_raw(storage, stored.location)
    _write_raw(storage, stored.location, raw[: len(raw) // 2])

    with pytest.raises(ValueError, match="is damaged") as info:
        manager.load_input(input_for(output()))
    assert stored.location in str(info.value)
