"""FsspecIOManager at its public surface, on a local dir, ``memory://`` and S3 (moto)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from plait_io import FsspecIOManager, OutputNotFoundError, StoredOutput

from tests.io._storage import Storage, input_for, output

ROUND_TRIPS = [
    ("cloudpickle", {"rows": [1, 2.5, None], "fn": len, "nested": ({"a"}, b"\x00\xff")}),
    ("pickle", {"rows": [1, 2.5, None], "when": (2024, 1, 1), "blob": b"\x00" * 1000}),
    ("json", {"name": "plait", "values": [1, 2.5, None, True], "unicode": "é✓"}),
    ("bytes", b"\x00\x01raw bytes\n\xff" * 1000),
]


@pytest.mark.parametrize(("serializer", "value"), ROUND_TRIPS, ids=[s for s, _ in ROUND_TRIPS])
def test_round_trip_with_each_default_serializer(storage: Storage, serializer, value) -> None:
    manager = storage.manager(serializer=serializer)
    ctx = output()
    stored = manager.handle_output(ctx, value)

    assert isinstance(stored, StoredOutput)
    assert stored.metadata == {"serializer": serializer}
    assert manager.load_input(input_for(ctx)) == value


def test_cloudpickle_stores_lambdas_and_pickle_refuses_them(storage: Storage) -> None:
    manager = storage.manager()
    ctx = output()
    manager.handle_output(ctx, lambda x: x + 1)
    assert manager.load_input(input_for(ctx))(1) == 2

    with pytest.raises(Exception, match="lambda") as info:
        storage.manager(serializer="pickle").handle_output(output("other"), lambda x: x)
    assert any("serializer 'pickle'" in note for note in info.value.__notes__)


@pytest.mark.parametrize("serializer", ["json", "bytes", "pickle"])
def test_an_output_chooses_its_serializer_and_the_loader_needs_no_metadata(
    storage: Storage, serializer: str
) -> None:
    value = b"payload" if serializer == "bytes" else ["a", 1]
    ctx = output(serializer=serializer)
    stored = storage.manager(serializer="cloudpickle").handle_output(ctx, value)
    assert stored.metadata == {"serializer": serializer}

    # The loader is told nothing about the serializer: no metadata, another default.
    reader = storage.manager(serializer="json" if serializer != "json" else "pickle")
    assert reader.load_input(input_for(output())) == value


def test_json_objects_stay_readable(storage: Storage) -> None:
    manager = storage.manager(serializer="json")
    stored = manager.handle_output(output(), {"rows": 3})
    raw = _read_raw(storage, stored.location)
    assert raw == b'plait-io/1 json\n{"rows": 3}'
    assert stored.size == len(raw)


def test_layout_is_base_run_step_output(storage: Storage) -> None:
    manager = storage.manager()
    stored = manager.handle_output(output("graph.op", "result", run_id="run-1"), 1)

    assert stored.location == f"{_base(storage)}/run-1/graph.op/result"
    assert storage.exists(stored.location)
    assert storage.listing(_base(storage)) == ["run-1/graph.op/result"]


def test_mapped_step_keys_and_mapping_keys_stay_readable(storage: Storage) -> None:
    manager = storage.manager()
    for key in ("a", "b_2", "C3"):
        manager.handle_output(output("split", "chunks", mapping_key=key), key.upper())
        manager.handle_output(output(f"work[{key}]", "result"), key * 2)

    assert storage.listing(_base(storage)) == [
        "run-1/split/chunks/C3",
        "run-1/split/chunks/a",
        "run-1/split/chunks/b_2",
        "run-1/work(C3)/result",
        "run-1/work(a)/result",
        "run-1/work(b_2)/result",
    ]
    assert manager.load_input(input_for(output("split", "chunks", mapping_key="b_2"))) == "B_2"
    assert manager.load_input(input_for(output("work[a]", "result"))) == "aa"


def test_unsafe_characters_are_encoded_not_interpreted(storage: Storage) -> None:
    manager = storage.manager()
    ctx = output("../escape/op x%", ".hidden", run_id="run/1")
    stored = manager.handle_output(ctx, "safe")

    assert stored.location == f"{_base(storage)}/run%2F1/%2E.%2Fescape%2Fop%20x%25/%2Ehidden"
    assert manager.load_input(input_for(ctx)) == "safe"


def test_load_uses_the_location_of_a_parent_run(storage: Storage) -> None:
    manager = storage.manager()
    parent = output("load", run_id="parent-run")
    stored = manager.handle_output(parent, {"from": "parent"})

    # The re-execution asks for its own run id, but the location points at the parent's.
    child_view = output("load", run_id="child-run")
    loaded = manager.load_input(input_for(child_view, location=stored.location))
    assert loaded == {"from": "parent"}
    with pytest.raises(OutputNotFoundError):
        manager.load_input(input_for(child_view))


def test_location_loads_through_a_fresh_manager(storage: Storage) -> None:
    stored = storage.manager().handle_output(output(), [1, 2, 3])
    fresh = pickle.loads(pickle.dumps(storage.manager()))
    assert fresh.load_location(stored.location) == [1, 2, 3]


def test_missing_object_names_step_output_and_url(storage: Storage) -> None:
    manager = storage.manager()
    ctx = output("graph.op", "result", run_id="run-9", mapping_key="k1")

    with pytest.raises(OutputNotFoundError) as info:
        manager.load_input(input_for(ctx))

    message = str(info.value)
    assert "'graph.op'" in message
    assert "'result'" in message
    assert "'k1'" in message
    assert f"{_base(storage)}/run-9/graph.op/result/k1" in message
    assert isinstance(info.value, FileNotFoundError)
    assert (info.value.step_key, info.value.output_name) == ("graph.op", "result")


def test_missing_object_at_an_explicit_location(storage: Storage) -> None:
    manager = storage.manager()
    location = f"{_base(storage)}/gone/op/result"
    with pytest.raises(OutputNotFoundError, match="gone/op/result"):
        manager.load_input(input_for(output(), location=location))


def test_stored_size_is_the_object_size(storage: Storage) -> None:
    stored = storage.manager(serializer="bytes").handle_output(output(), b"x" * 12345)
    assert stored.size == len(_read_raw(storage, stored.location))
    assert stored.size > 12345


def test_has_output(storage: Storage) -> None:
    manager = storage.manager()
    ctx = output()
    assert not manager.has_output(ctx)
    manager.handle_output(ctx, 1)
    assert manager.has_output(ctx)


def test_serializer_errors_say_what_to_do(storage: Storage) -> None:
    with pytest.raises(ValueError, match="expected one of bytes, cloudpickle, json, pickle"):
        storage.manager(serializer="yaml")
    with pytest.raises(ValueError, match="unknown serializer 'yaml'"):
        storage.manager().handle_output(output(serializer="yaml"), 1)
    with pytest.raises(TypeError, match="bytes-like objects only, got str"):
        storage.manager(serializer="bytes").handle_output(output(), "text")


def test_objects_not_written_by_the_manager_are_refused(storage: Storage) -> None:
    manager = storage.manager()
    stored = manager.handle_output(output(), 1)
    import fsspec

    with fsspec.open(stored.location, "wb", **storage.options_for(stored.location)) as f:
        f.write(b"\x80\x05K\x01.")  # a bare pickle, no header
    with pytest.raises(ValueError, match="was not written by FsspecIOManager"):
        manager.load_input(input_for(output()))


def test_process_local_is_false() -> None:
    assert FsspecIOManager.process_local is False


def test_relative_local_paths_become_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    manager = FsspecIOManager("outputs/")
    assert manager.base_url == f"file://{tmp_path.as_posix()}/outputs"
    assert FsspecIOManager(tmp_path).base_url == f"file://{tmp_path.as_posix()}"


# -- pickling and secrets ----------------------------------------------------------------

SECRET_OPTIONS = {
    "key": "AKIAEXAMPLEKEYID",
    "secret": "very-secret-value",
    "token": "session-token-value",
    "client_kwargs": {
        "endpoint_url": "http://127.0.0.1:9",
        "aws_secret_access_key": "nested-secret-value",
    },
}
SECRETS = ["AKIAEXAMPLEKEYID", "very-secret-value", "session-token-value", "nested-secret-value"]


def test_pickles_small_and_without_a_filesystem(storage: Storage) -> None:
    manager = storage.manager()
    manager.handle_output(output(), 1)  # builds the filesystem in this process

    data = pickle.dumps(manager)
    assert len(data) < 1000
    for marker in (b"FileSystem", b"fsspec.implementations", b"s3fs", b"aiobotocore"):
        assert marker not in data
    assert set(manager.__getstate__()) == {"base_url", "storage_options", "serializer"}
    clone = pickle.loads(data)
    assert clone.load_input(input_for(output())) == 1


def test_a_pickled_manager_loads_in_another_process(storage: Storage) -> None:
    if storage.kind == "memory":
        pytest.skip("memory:// lives in one process")
    manager = storage.manager()
    manager.handle_output(output(), {"cross": "process"})
    script = (
        "import pickle, sys\n"
        "from tests.io._storage import input_for, output\n"
        "manager = pickle.load(sys.stdin.buffer)\n"
        "print(manager.load_input(input_for(output())))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        input=pickle.dumps(manager),
        capture_output=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "{'cross': 'process'}"


def test_repr_and_describe_mask_secrets() -> None:
    manager = FsspecIOManager("s3://bucket/prefix", SECRET_OPTIONS)
    for text in (repr(manager), manager.describe(), str(manager)):
        for secret in SECRETS:
            assert secret not in text
    assert "s3://bucket/prefix" in manager.describe()
    assert "'key': '***'" in repr(manager)
    assert "http://127.0.0.1:9" in repr(manager)  # not a secret, useful when debugging


def test_credentials_in_the_url_are_masked() -> None:
    manager = FsspecIOManager("ftp://user:hunter2@example.invalid/outputs")
    assert "hunter2" not in repr(manager)
    assert "hunter2" not in manager.describe()
    assert "hunter2" not in manager.location_for(output())


def test_importing_plait_io_does_not_import_fsspec() -> None:
    script = (
        "import sys, plait_io\n"
        "assert 'fsspec' not in sys.modules, 'fsspec imported'\n"
        "plait_io.FsspecIOManager\n"
        "assert 'fsspec' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_errors_survive_pickling() -> None:
    error = OutputNotFoundError("s3://b/r/op/result", "op", "result", "r", "k")
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == str(error)
    assert (clone.url, clone.step_key, clone.mapping_key) == ("s3://b/r/op/result", "op", "k")


# -- helpers ---------------------------------------------------------------------------


def _base(storage: Storage) -> str:
    return storage.manager().base_url


def _read_raw(storage: Storage, location: str) -> bytes:
    import fsspec

    with fsspec.open(location, "rb", **storage.options_for(location)) as f:
        return f.read()


def test_a_retry_stores_apart_so_a_late_earlier_attempt_cannot_replace_it(tmp_path):
    from plait_io import FsspecIOManager, InputContext, OutputContext

    io = FsspecIOManager(str(tmp_path))
    accepted = io.handle_output(OutputContext("run", "step", "result", attempt=1), "accepted")
    late = io.handle_output(OutputContext("run", "step", "result", attempt=0), "late")
    assert accepted.location.endswith("/run/step/retry-1/result")
    assert late.location != accepted.location
    upstream = OutputContext("run", "step", "result", attempt=1)
    loaded = io.load_input(InputContext("run", "next", "x", upstream, accepted.location))
    assert loaded == "accepted"
