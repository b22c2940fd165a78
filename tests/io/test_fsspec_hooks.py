"""FsspecIOManager's subclass hooks (``_encode``, ``_decode_foreign``) on local files,
``memory://`` and S3 (moto): a subclass changes how objects are encoded and decoded, and
keeps the layout, atomic writes, error wrapping and the fast load path of the rest."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, BinaryIO

import fsspec
import pytest
from plait_io import InputContext, OutputContext, OutputNotFoundError
from plait_io.fsspec import Encoding, FsspecIOManager

from tests.io._storage import Storage, input_for, output

MAGIC = b"TXT1\n"
FIRST_READ = 64 * 2**10  # the loader's first read: smaller objects are read whole
TEXTS = {
    "empty": "",
    "small": "héllo wörld",
    "large": "ä" * FIRST_READ + "the end",  # beyond the first read, not a multiple of it
}


class TextIOManager(FsspecIOManager):
    """A subclass with a format of its own: ``str`` outputs as UTF-8 after ``TXT1\\n``,
    readable by any tool; everything else as ``FsspecIOManager`` stores it."""

    def _encode(self, context: OutputContext, obj: Any) -> Encoding:
        if not isinstance(obj, str):
            return super()._encode(context, obj)
        data = MAGIC + obj.encode("utf-8")  # an unencodable str fails here, before storage
        return Encoding("text", lambda f: f.write(data), {"chars": len(obj)})

    def _decode_foreign(self, file: BinaryIO, url: str) -> Any:
        if file.read(len(MAGIC)) != MAGIC:
            file.seek(0)
            return super()._decode_foreign(file, url)
        return file.read().decode("utf-8")


class BrokenWriteIOManager(FsspecIOManager):
    """Writes half an object, then fails: nothing may be stored."""

    def _encode(self, context: OutputContext, obj: Any) -> Encoding:
        def write(f: BinaryIO) -> None:
            f.write(b"half an object")
            raise OSError("disk full")

        return Encoding("half", write)


def text_manager(storage: Storage, **kwargs: Any) -> TextIOManager:
    return TextIOManager(storage.url, storage.storage_options, **kwargs)


def read_raw(storage: Storage, location: str) -> bytes:
    with fsspec.open(location, "rb", **storage.options_for(location)) as f:
        return f.read()


def write_raw(storage: Storage, location: str, data: bytes) -> None:
    """Store ``data`` as it is, as another tool would (parent folders made as needed)."""
    with fsspec.open(location, "wb", **storage.options_for(location)) as f:
        f.write(data)


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_a_subclass_stores_its_own_format_at_the_usual_location(
    storage: Storage, text: str
) -> None:
    manager = text_manager(storage)
    ctx = replace(output("split[a]", mapping_key="k"), attempt=1)
    stored = manager.handle_output(ctx, text)

    assert stored.location == manager.location_for(ctx) == storage.manager().location_for(ctx)
    assert stored.location == f"{manager.base_url}/run-1/split(a)/retry-1/result/k"
    raw = read_raw(storage, stored.location)
    assert raw == MAGIC + text.encode("utf-8") and stored.size == len(raw)
    assert stored.metadata == {"serializer": "text", "chars": len(text)}
    assert manager.has_output(ctx)
    assert manager.load_input(input_for(ctx, stored.location)) == text
    assert manager.load_input(input_for(ctx)) == text  # by layout, no location
    assert manager.load_location(stored.location) == text


def test_other_objects_keep_the_default_format_and_load_writable(storage: Storage) -> None:
    np = pytest.importorskip("numpy")
    manager = text_manager(storage, serializer="pickle")
    array = np.arange(FIRST_READ, dtype=np.float64)  # 512 KiB: stored out of band
    stored = manager.handle_output(output(), {"array": array})

    assert stored.metadata == {"serializer": "pickle"}
    assert read_raw(storage, stored.location).startswith(b"plait-io/2 pickle\n")
    loaded = manager.load_input(input_for(output()))["array"]
    assert np.array_equal(loaded, array) and loaded.flags.writeable
    loaded[0] = -1  # users mutate inputs in place
    # the same object, for a plain FsspecIOManager
    assert np.array_equal(storage.manager().load_location(stored.location)["array"], array)
    json_ctx = output(output_name="j", serializer="json")
    assert manager.handle_output(json_ctx, [1, "a"]).metadata == {"serializer": "json"}
    assert manager.load_input(input_for(json_ctx)) == [1, "a"]


def test_a_failed_write_stores_nothing_and_names_the_output(storage: Storage) -> None:
    manager = BrokenWriteIOManager(storage.url, storage.storage_options)
    with pytest.raises(OSError, match="disk full") as info:
        manager.handle_output(output(), "anything")
    location = manager.location_for(output())
    assert info.value.__notes__ == [
        f"while storing output 'result' of step 'op' at {location} with serializer 'half'"
    ]
    assert storage.listing(manager.base_url) == []


def test_an_encoding_error_comes_before_storage_is_touched(storage: Storage) -> None:
    manager = text_manager(storage)
    with pytest.raises(UnicodeEncodeError) as info:
        manager.handle_output(output(), "lone surrogate \ud800")
    assert not getattr(info.value, "__notes__", None)
    assert storage.listing(manager.base_url) == []


def test_a_missing_output_names_the_upstream_step(storage: Storage) -> None:
    manager = text_manager(storage)
    with pytest.raises(OutputNotFoundError, match="output 'result' of step 'op' from run 'run-1'"):
        manager.load_input(input_for(output()))


@pytest.mark.parametrize(
    "data", [b"", b"GARBAGE", b"G" * (FIRST_READ + 1)], ids=["empty", "small", "large"]
)
def test_objects_no_format_knows_are_refused_by_both(storage: Storage, data: bytes) -> None:
    manager = text_manager(storage)
    location = manager.location_for(output())
    write_raw(storage, location, data)
    for reader in (manager, storage.manager()):
        with pytest.raises(ValueError, match="was not written by FsspecIOManager") as info:
            reader.load_input(input_for(output(), location))
        assert repr(data[:32]) in str(info.value) and location in str(info.value)


def test_a_decoding_error_is_the_subclass_own(storage: Storage) -> None:
    manager = text_manager(storage)
    location = manager.location_for(output())
    write_raw(storage, location, MAGIC + b"\xff not utf-8")
    with pytest.raises(UnicodeDecodeError):
        manager.load_location(location)


# ---- S3: one request per load, whatever the format ------------------------------------


@contextmanager
def s3_requests(url: str, storage_options: dict[str, Any]) -> Iterator[list[str]]:
    """The names of the S3 operations sent meanwhile by the s3fs filesystem for ``url``
    (fsspec caches one per set of options, so it is the one a manager uses)."""
    fs, _ = fsspec.core.url_to_fs(url, **storage_options)
    fs.connect()
    sent: list[str] = []

    def count(model: Any, **_: Any) -> None:
        sent.append(model.name)

    fs.s3.meta.events.register("before-call.s3", count)
    try:
        yield sent
    finally:
        fs.s3.meta.events.unregister("before-call.s3", count)


@pytest.mark.services
def test_s3_loads_send_one_get_for_either_format(s3_url: Any) -> None:
    np = pytest.importorskip("numpy")
    storage = Storage("s3", s3_url.url, s3_url.storage_options, bucket=s3_url.bucket)
    manager = text_manager(storage)
    objects: dict[str, Any] = {"text": TEXTS["large"], "array": np.arange(FIRST_READ)}
    for name, value in objects.items():
        manager.handle_output(output(output_name=name), value)
    for name, value in objects.items():
        with s3_requests(storage.url, storage.storage_options) as sent:
            loaded = manager.load_input(
                InputContext("run-1", "down", "x", output(output_name=name))
            )
        assert sent == ["GetObject"], name
        if name == "array":
            assert np.array_equal(loaded, value) and loaded.flags.writeable
        else:
            assert loaded == value
