"""``ParquetIOManager`` on local files, ``memory://`` and S3 (moto): round trips, the plain
Parquet layout other tools read, the fallback for other objects (loaded the way
``FsspecIOManager`` loads them), errors, and the metadata that reaches STEP_OUTPUT events.
Plus ``ConfigurableParquetIOManager``."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from plait import EventType, Instance, Out, RunConfigError, job, op
from plait_io import FsspecIOManager, InputContext, OutputContext, OutputNotFoundError
from plait_pandas import ConfigurableParquetIOManager, DataFrameType, ParquetIOManager

from tests.io.test_fsspec_hooks import s3_requests

# ---- storage: local, memory://, S3 ----------------------------------------------------


@dataclass(frozen=True)
class Storage:
    kind: str
    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def manager(self, **kwargs: Any) -> ParquetIOManager:
        return ParquetIOManager(self.url, self.storage_options, **kwargs)

    def fs(self) -> Any:
        fs, _ = fsspec.core.url_to_fs(self.url, **self.storage_options)
        fs.invalidate_cache()
        return fs

    def files(self) -> list[str]:
        """Every file under the base URL (temp files included), relative to it."""
        fs, base = fsspec.core.url_to_fs(self.url, **self.storage_options)
        fs.invalidate_cache()
        base = base.rstrip("/")
        return sorted(p[len(base) + 1 :] for p in fs.find(base, withdirs=False))


@pytest.fixture(params=["local", "memory", pytest.param("s3", marks=pytest.mark.services)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "local":
        yield Storage("local", (tmp_path / "store").as_uri())
    elif request.param == "memory":
        url = f"memory://plait-pandas-{uuid.uuid4().hex[:12]}"
        yield Storage("memory", url)
        fs, path = fsspec.core.url_to_fs(url)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    else:
        s3 = request.getfixturevalue("s3_url")
        yield Storage("s3", s3.url, s3.storage_options)


def out_ctx(
    step_key: str = "op",
    output_name: str = "result",
    mapping_key: str | None = None,
    **metadata: Any,
) -> OutputContext:
    return OutputContext("run-1", step_key, output_name, mapping_key, metadata)


def load(manager: ParquetIOManager, ctx: OutputContext, location: str | None = None) -> Any:
    return manager.load_input(InputContext("run-1", "downstream", "df", ctx, location))


# ---- frames ---------------------------------------------------------------------------


def rich_frame() -> pd.DataFrame:
    n = 6
    return pd.DataFrame(
        {
            "int": np.arange(n, dtype="int64"),
            "nullable_int": pd.array([1, None, 3, 4, None, 6], dtype="Int64"),
            "float": [0.5, np.nan, 2.5, -1.0, 1e300, 0.0],
            "bool": [True, False] * 3,
            "text": ["a", None, "c", "ü", "", "f"],
            "category": pd.Categorical(["lo", "hi"] * 3, categories=["lo", "hi"], ordered=True),
            "when": pd.date_range("2024-01-01", periods=n, freq="h").astype("datetime64[ns]"),
            "when_tz": pd.date_range("2024-01-01", periods=n, freq="D", tz="Europe/Paris"),
            "delta": pd.to_timedelta(np.arange(n), unit="s"),
            "small": np.arange(n, dtype="uint8"),
        },
        index=pd.Index([10, 20, 30, 40, 50, 60], name="key"),
    )


FRAMES = {
    "rich": rich_frame,
    "range_index": lambda: pd.DataFrame({"a": [1, 2, 3]}, index=pd.RangeIndex(5, 11, 2)),
    "text_index": lambda: pd.DataFrame({"a": [1.0, 2.0]}, index=pd.Index(["x", "y"], name="k")),
    "multi_index": lambda: pd.DataFrame(
        {"v": [1, 2, 3]},
        index=pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)], names=["s", "n"]),
    ),
    "int_column_names": lambda: pd.DataFrame({1: [1, 2], 2: [3, 4]}),
    "empty": lambda: pd.DataFrame(
        {"a": pd.Series([], dtype="int64"), "b": pd.Series([], dtype="float64")}
    ),
}


@pytest.mark.parametrize("make", FRAMES.values(), ids=FRAMES.keys())
def test_round_trip(storage: Storage, make: Any) -> None:
    manager = storage.manager()
    ctx = out_ctx()
    frame = make()
    stored = manager.handle_output(ctx, frame)
    assert stored.location == f"{manager.base_url}/run-1/op/result"
    pd.testing.assert_frame_equal(load(manager, ctx, stored.location), frame)
    pd.testing.assert_frame_equal(load(manager, ctx), frame)  # by layout, no location
    pd.testing.assert_frame_equal(manager.load_location(stored.location), frame)


def test_stored_objects_are_plain_parquet_at_the_usual_layout(storage: Storage) -> None:
    manager = storage.manager()
    frame = rich_frame()
    stored = manager.handle_output(out_ctx("split[part-1]", mapping_key="k1"), frame)
    assert storage.files() == ["run-1/split(part-1)/result/k1"]
    assert stored.location == f"{manager.base_url}/run-1/split(part-1)/result/k1"
    # any Parquet reader opens it: no plait header in front
    with fsspec.open(stored.location, "rb", **storage.storage_options) as f:
        assert f.read(4) == b"PAR1"
    read = pd.read_parquet(stored.location, storage_options=storage.storage_options or None)
    pd.testing.assert_frame_equal(read, frame)
    assert stored.size == storage.fs().size(stored.location)
    assert stored.metadata == {
        "serializer": "parquet",
        "rows": 6,
        "columns": 10,
        "bytes": stored.size,
        "dtypes": {name: str(dtype) for name, dtype in frame.dtypes.items()},
    }


def test_other_objects_fall_back_to_the_default_serializer(storage: Storage) -> None:
    manager = storage.manager()
    series = pd.Series([1, 2], name="s")
    values = {"dict": {"a": [1, 2]}, "series": series, "none": None}
    for name, value in values.items():
        ctx = out_ctx(output_name=name)
        stored = manager.handle_output(ctx, value)
        assert stored.metadata == {"serializer": "cloudpickle"}
        loaded = load(manager, ctx, stored.location)
        if isinstance(value, pd.Series):
            pd.testing.assert_series_equal(loaded, value)
        else:
            assert loaded == value
    # readable by a plain FsspecIOManager too: same format as its own objects
    plain = FsspecIOManager(storage.url, storage.storage_options)
    assert plain.load_location(f"{manager.base_url}/run-1/op/dict") == {"a": [1, 2]}


def test_a_frame_larger_than_the_first_read_round_trips(storage: Storage) -> None:
    manager = storage.manager(compression=None)
    n = 50_000
    frame = pd.DataFrame({"i": np.arange(n), "x": np.linspace(0, 1, n), "s": ["ab"] * n})
    stored = manager.handle_output(out_ctx(), frame)
    assert stored.size > 64 * 2**10  # beyond the loader's first read: read in two parts
    pd.testing.assert_frame_equal(load(manager, out_ctx()), frame)


def test_other_objects_load_writable_like_fsspec_io_manager_outputs(storage: Storage) -> None:
    manager = storage.manager(serializer="pickle")
    array = np.arange(100_000, dtype=np.float64)  # large: its buffer is stored out of band
    stored = manager.handle_output(out_ctx(), {"array": array})
    with fsspec.open(stored.location, "rb", **storage.storage_options) as f:
        assert f.read(18) == b"plait-io/2 pickle\n"
    loaded = load(manager, out_ctx())["array"]
    assert np.array_equal(loaded, array) and loaded.flags.writeable


def test_objects_in_neither_format_are_refused_and_broken_parquet_named(
    storage: Storage,
) -> None:
    manager = storage.manager()
    location = manager.location_for(out_ctx())
    fs, path = fsspec.core.url_to_fs(location, **storage.storage_options)
    fs.makedirs(fs._parent(path), exist_ok=True)
    fs.pipe_file(path, b"id,name\n1,a\n")
    with pytest.raises(ValueError, match="was not written by FsspecIOManager"):
        manager.load_location(location)
    fs.pipe_file(path, b"PAR1 but not a Parquet file")
    with pytest.raises(pa.ArrowInvalid) as info:
        manager.load_location(location)
    assert f"while reading the Parquet object at {location}" in info.value.__notes__


@pytest.mark.services
def test_s3_loads_send_one_get_for_frames_and_other_objects(s3_url: Any) -> None:
    manager = ParquetIOManager(s3_url.url, s3_url.storage_options)
    objects = {"frame": rich_frame(), "array": np.arange(100_000)}
    for name, value in objects.items():
        manager.handle_output(out_ctx(output_name=name), value)
    with s3_requests(s3_url.url, s3_url.storage_options) as sent:
        frame = load(manager, out_ctx(output_name="frame"))
        assert sent == ["GetObject"]
        array = load(manager, out_ctx(output_name="array"))
        assert sent == ["GetObject", "GetObject"]
    pd.testing.assert_frame_equal(frame, objects["frame"])
    assert np.array_equal(array, objects["array"]) and array.flags.writeable


def test_an_output_may_choose_its_serializer(storage: Storage) -> None:
    manager = storage.manager(serializer="json")
    frame = pd.DataFrame({"mixed": [1, "a", None]})  # Parquet cannot hold this column
    ctx = out_ctx(serializer="cloudpickle")
    assert manager.handle_output(ctx, frame).metadata == {"serializer": "cloudpickle"}
    pd.testing.assert_frame_equal(load(manager, ctx), frame)
    assert manager.handle_output(out_ctx(output_name="j"), [1, 2]).metadata == {
        "serializer": "json"
    }
    with pytest.raises(TypeError, match="serializer 'parquet', which stores pandas DataFrames"):
        manager.handle_output(out_ctx(output_name="p", serializer="parquet"), [1, 2])


def test_a_frame_parquet_cannot_hold_fails_before_storage_is_touched(storage: Storage) -> None:
    manager = storage.manager()
    with pytest.raises(ValueError, match="cannot be stored as Parquet") as info:
        manager.handle_output(out_ctx(), pd.DataFrame({"mixed": [1, "a", None]}))
    assert "Out(metadata={'serializer': 'cloudpickle'})" in str(info.value)
    assert storage.files() == []


def test_a_missing_output_says_so(storage: Storage) -> None:
    manager = storage.manager()
    with pytest.raises(OutputNotFoundError, match="output 'result' of step 'op' from run 'run-1'"):
        load(manager, out_ctx())


def test_compression_is_applied_and_survives_pickling(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path, compression="zstd")
    copy = pickle.loads(pickle.dumps(manager))
    assert (copy.base_url, copy.compression) == (manager.base_url, "zstd")
    stored = copy.handle_output(out_ctx(), rich_frame())
    meta = pq.ParquetFile(stored.location.removeprefix("file://")).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    with pytest.raises(ValueError, match="unknown or unavailable Parquet compression 'zip'"):
        ParquetIOManager(tmp_path, compression="zip")


def test_repr_masks_secrets() -> None:
    options = {"key": "AKIA-secret", "secret": "hush", "client_kwargs": {"region_name": "x"}}
    text = repr(ParquetIOManager("s3://bucket/base", options))
    assert "AKIA" not in text and "hush" not in text and "region_name" in text
    text = repr(ConfigurableParquetIOManager(base_url="s3://bucket/base", storage_options=options))
    assert "AKIA" not in text and "hush" not in text
    assert text.startswith("ConfigurableParquetIOManager(ParquetIOManager('s3://bucket/base'")


# ---- in a job: metadata in events -----------------------------------------------------

Numbers = DataFrameType("numbers", columns={"n": "int64", "square": "int64"})


@op
def numbers() -> Numbers:
    n = np.arange(1_000)
    return pd.DataFrame({"n": n, "square": n * n})


@op
def total(df: Numbers) -> int:
    return int(df["square"].sum())


@op(out=Out(metadata={"serializer": "json"}))
def as_records(df: Numbers) -> list:
    return df.head(2).to_dict("records")


@job
def squares():
    df = numbers()
    total(df)
    as_records(df)


def test_step_output_events_carry_the_frame_metadata(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path / "data")
    result = squares.execute(
        instance=Instance(tmp_path / "home"), resources={"io_manager": manager}
    )
    assert result.output_for("total") == sum(i * i for i in range(1_000))
    [out] = [
        e
        for e in result.events
        if e.event_type is EventType.STEP_OUTPUT and e.step_key == "numbers"
    ]
    meta = out.data["metadata"]
    assert {k: meta[k] for k in ("serializer", "rows", "columns")} == {
        "serializer": "parquet",
        "rows": 1_000,
        "columns": 2,
    }
    assert meta["dtypes"] == {"n": "int64", "square": "int64"}
    assert (
        meta["bytes"]
        == out.data["size"]
        == Path(out.data["location"].removeprefix("file://")).stat().st_size
    )
    # events are stored as they were recorded: read them back from the instance's storage
    stored = Instance(tmp_path / "home").storage.get_events(result.run_id)
    [again] = [
        e for e in stored if e.event_type is EventType.STEP_OUTPUT and e.step_key == "numbers"
    ]
    assert again.data["metadata"] == meta
    [records] = [
        e
        for e in result.events
        if e.event_type is EventType.STEP_OUTPUT and e.step_key == "as_records"
    ]
    assert records.data["metadata"] == {"serializer": "json"}
    pd.testing.assert_frame_equal(result.output_for("numbers"), numbers.fn())


# ---- ConfigurableParquetIOManager ------------------------------------------------------


@job(resources={"io_manager": ConfigurableParquetIOManager(base_url="memory://unused")})
def configured():
    total(numbers())


def test_run_config_sets_the_base_url(tmp_path: Path) -> None:
    config = {"resources": {"io_manager": {"config": {"base_url": str(tmp_path / "elsewhere")}}}}
    result = configured.execute(instance=Instance(tmp_path / "home"), run_config=config)
    assert result.success
    assert (tmp_path / "elsewhere" / result.run_id / "numbers" / "result").is_file()


def test_bad_settings_are_run_config_errors_with_their_path(tmp_path: Path) -> None:
    config = {"resources": {"io_manager": {"config": {"compression": "zip", "serializer": "xml"}}}}
    with pytest.raises(RunConfigError) as info:
        configured.execute(instance=Instance(tmp_path / "home"), run_config=config)
    text = str(info.value)
    assert (
        "resources.io_manager.config.compression: Value error, unknown or unavailable Parquet compression 'zip'"
        in text
    )
    assert "resources.io_manager.config.serializer: Value error, unknown serializer 'xml'" in text


def test_configurable_manager_pickles_small_and_makes_local_paths_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    resource = ConfigurableParquetIOManager(base_url="relative/data", compression=None)
    assert resource.base_url == (tmp_path / "relative" / "data").as_uri()
    copy = cloudpickle.loads(cloudpickle.dumps(resource))
    assert copy.manager.base_url == resource.base_url and copy.manager.compression is None
    assert copy.with_config({"compression": "gzip"}).manager.compression == "gzip"
