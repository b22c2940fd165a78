"""Writes are atomic: readers see the whole object or none, failed writers leave nothing."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem
from plait_io import FsspecIOManager, OutputNotFoundError
from plait_io._atomic import write_atomic

from tests.io._slow_objects import CHUNK_BYTES, MID_WRITE, Boom, Pause
from tests.io._storage import Storage, input_for, output

REPO = Path(__file__).parents[2]
WAIT = 60.0


def _manager(storage: Storage) -> FsspecIOManager:
    """A manager whose S3 uploads go in 5 MB parts, so a CHUNK_BYTES write is multipart."""
    options = dict(storage.storage_options)
    if storage.kind == "s3":
        options["default_block_size"] = 5 * 2**20
    return FsspecIOManager(storage.url, options)


def _pending_uploads(storage: Storage) -> list[str]:
    fs = FsspecIOManager(storage.url, storage.storage_options)._filesystem()[0]
    reply = fs.call_s3("list_multipart_uploads", Bucket=storage.bucket)
    return [upload["Key"] for upload in reply.get("Uploads", [])]


def test_a_failing_serializer_leaves_nothing_behind(storage: Storage) -> None:
    manager = _manager(storage)
    ctx = output()

    with pytest.raises(RuntimeError, match="half way") as info:
        manager.handle_output(ctx, [b"x" * CHUNK_BYTES, Boom()])

    assert any("while storing output 'result'" in note for note in info.value.__notes__)
    assert not storage.exists(manager.location_for(ctx))
    assert storage.listing(manager.base_url) == []  # no temp file either
    if storage.kind == "s3":
        assert _pending_uploads(storage) == []  # the multipart upload was aborted


def test_a_failed_overwrite_keeps_the_previous_object(storage: Storage) -> None:
    manager = _manager(storage)
    ctx = output()
    manager.handle_output(ctx, "previous")

    with pytest.raises(RuntimeError, match="half way"):
        manager.handle_output(ctx, [b"x" * CHUNK_BYTES, Boom()])

    assert manager.load_input(input_for(ctx)) == "previous"


@pytest.mark.parametrize("previous", [None, "previous"], ids=["new", "overwrite"])
def test_a_reader_never_sees_a_half_written_object(storage: Storage, previous) -> None:
    manager = _manager(storage)
    ctx = output()
    if previous is not None:
        manager.handle_output(ctx, previous)
    started, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            manager.handle_output(ctx, [b"x" * CHUNK_BYTES, Pause(started, release)])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        assert started.wait(WAIT), "the writer never reached the middle of its write"
        if previous is None:
            with pytest.raises(OutputNotFoundError):
                manager.load_input(input_for(ctx))
        else:
            assert manager.load_input(input_for(ctx)) == previous
    finally:
        release.set()
        writer.join(WAIT)
    assert not writer.is_alive() and errors == []
    assert manager.load_input(input_for(ctx)) == [b"x" * CHUNK_BYTES, "finished"]


def test_a_killed_writer_leaves_no_object(storage: Storage, tmp_path: Path) -> None:
    if storage.kind == "memory":
        pytest.skip("memory:// dies with the process that holds it")
    manager = _manager(storage)
    ctx = output("big.op[k]", "result", run_id="crash-run")
    config = {
        "base_url": manager.base_url,
        "storage_options": manager.storage_options,
        "run_id": ctx.run_id,
        "step_key": ctx.step_key,
        "output_name": ctx.output_name,
    }
    stderr = (tmp_path / "child.err").open("wb")
    child = subprocess.Popen(
        [sys.executable, "-u", "-m", "tests.io._slow_objects", json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        cwd=REPO,
    )
    try:
        _wait_for_line(child, MID_WRITE, WAIT, tmp_path / "child.err")

        # The child is provably mid-write: its bytes are out, but not under the name.
        location = manager.location_for(ctx)
        assert not storage.exists(location)
        if storage.kind == "s3":
            assert _pending_uploads(storage) == [location.removeprefix(f"s3://{storage.bucket}/")]
        else:
            temp_files = [p for p in storage.listing(manager.base_url) if p.endswith(".tmp")]
            assert len(temp_files) == 1
            assert (
                os.path.getsize(f"{_local_path(manager.base_url)}/{temp_files[0]}") >= CHUNK_BYTES
            )

        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=WAIT) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=WAIT)
        stderr.close()

    assert not storage.exists(location)
    assert all(not p.endswith("/result") for p in storage.listing(manager.base_url))
    with pytest.raises(OutputNotFoundError):
        manager.load_input(input_for(ctx))


def test_other_filesystems_write_a_temp_file_then_move_it(tmp_path: Path) -> None:
    """Backends without a dedicated writer (here a DirFileSystem) still never show halves."""
    fs = DirFileSystem(path=str(tmp_path), fs=LocalFileSystem())

    size = write_atomic(fs, "run/op/result", lambda f: f.write(b"whole"))
    assert size == 5
    assert fs.cat_file("run/op/result") == b"whole"

    def fail(f) -> None:
        f.write(b"half")
        raise RuntimeError("serializer failed half way")

    with pytest.raises(RuntimeError):
        write_atomic(fs, "run/op/other", fail)
    assert sorted(os.listdir(tmp_path / "run" / "op")) == ["result"]


def _wait_for_line(
    proc: subprocess.Popen[bytes], expected: str, timeout: float, stderr_path: Path
) -> None:
    """Block until ``proc`` prints ``expected`` on a line of its own, or fail at the deadline."""
    lines: queue.Queue[bytes | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            pytest.fail(f"no {expected!r} from the writer within {timeout}s")
        if line is None:
            pytest.fail(f"the writer exited before {expected!r}: {stderr_path.read_text()[-2000:]}")
        if line.decode().strip() == expected:
            return


def _local_path(url: str) -> str:
    return url.removeprefix("file://")
