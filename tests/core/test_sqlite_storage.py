"""SqliteRunStorage on real SQLite files: round trips, queries, schema checks, concurrency.

Behaviour every RunStorage shares is in test_storage_conformance.py; this file covers what
only the SQLite storage has: persistence, the schema version, bad files, batching, and
several threads and processes on one file.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import sqlite3
import threading
from pathlib import Path

import pytest
from plait._storage._schema import SCHEMA_VERSION
from plait._storage.base import RunRecord, RunStatus
from plait._storage.sqlite import SqliteRunStorage
from plait.errors import StorageError
from plait.events import Event, EventType

JOIN_TIMEOUT = 120.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "runs.db"


@pytest.fixture
def storage(db_path: Path):
    storage = SqliteRunStorage(db_path)
    yield storage
    storage.close()


def make_events(run_id: str, count: int, start: int = 1, steps: int = 10) -> list[Event]:
    return [
        Event(
            run_id=run_id,
            seq=seq,
            timestamp=1000.0 + seq,
            event_type=EventType.LOG if seq % 2 else EventType.STEP_OUTPUT,
            step_key=f"step_{seq % steps}",
            level=logging.DEBUG if seq % 3 else logging.WARNING,
            message=f"event {seq}",
            data={"seq": seq},
            attempt=seq % 4 or None,
        )
        for seq in range(start, start + count)
    ]


# -- files, schema, errors ------------------------------------------------------------------


def test_creates_parent_folders_wal_and_schema_version(db_path: Path, storage) -> None:
    assert db_path.is_file()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "events", "run_tags"} <= tables


def test_data_outlives_the_storage_object(db_path: Path) -> None:
    first = SqliteRunStorage(db_path)
    first.create_run(RunRecord("r1", "job", start_time=1.0))
    first.append_events(make_events("r1", 3))
    first.close()

    second = SqliteRunStorage(db_path)
    assert second.get_run("r1") == RunRecord("r1", "job", start_time=1.0)
    assert [e.seq for e in second.get_events("r1")] == [1, 2, 3]
    second.close()


def test_close_then_use_reconnects(storage) -> None:
    storage.create_run(RunRecord("r1", "job"))
    storage.close()
    storage.close()  # twice is fine
    assert storage.get_run("r1") is not None
    storage.close()


def test_newer_schema_version_is_refused(db_path: Path) -> None:
    SqliteRunStorage(db_path).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(StorageError) as caught:
        SqliteRunStorage(db_path)
    message = str(caught.value)
    assert str(db_path) in message
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert f"supports up to version {SCHEMA_VERSION}" in message
    assert "Upgrade plait" in message and "PLAIT_HOME" in message


def test_corrupt_file_is_refused_with_its_path(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a database, just some bytes " * 100)

    with pytest.raises(StorageError) as caught:
        SqliteRunStorage(db_path)
    assert str(db_path) in str(caught.value)
    assert "not a (readable) SQLite database" in str(caught.value)


def test_foreign_sqlite_database_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER)")

    with pytest.raises(StorageError, match="not plait run storage"):
        SqliteRunStorage(db_path)


def test_unopenable_path_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "runs.db").mkdir()  # a folder where the file should be
    with pytest.raises(StorageError, match="runs.db"):
        SqliteRunStorage(tmp_path / "runs.db")


def test_locked_database_times_out_with_an_explanation(db_path: Path) -> None:
    storage = SqliteRunStorage(db_path, timeout=0.1)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(
            StorageError, match=r"kept it locked \(waited 0\.\d s of the 0\.1 s timeout\)"
        ):
            storage.append_events(make_events("r1", 1))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    storage.append_events(make_events("r1", 1))  # no transaction was left open
    assert len(storage.get_events("r1")) == 1
    storage.close()


# -- round trips ----------------------------------------------------------------------------


def test_run_round_trip_of_every_field(storage) -> None:
    record = RunRecord(
        run_id="r1",
        job_name="etl",
        status=RunStatus.FAILURE,
        run_config={"ops": {"load": {"config": {"n": 3, "x": [1.5, None, "s"]}}}},
        tags={"team": "data", "ünïcode": "✓"},
        parent_run_id="r0",
        start_time=1700000000.25,
        end_time=1700000009.5,
        job_pointer="pkg.jobs:etl",
        job_pickle=b"\x80\x05\x00binary\xff",
    )
    storage.create_run(record)

    loaded = storage.get_run("r1")
    assert loaded == record
    assert type(loaded.status) is RunStatus
    assert type(loaded.job_pickle) is bytes
    assert storage.get_run("missing") is None


def test_run_defaults_round_trip(storage) -> None:
    storage.create_run(RunRecord("r1", "job"))
    assert storage.get_run("r1") == RunRecord("r1", "job")


def test_update_run(storage) -> None:
    storage.create_run(RunRecord("r1", "job", start_time=1.0))
    storage.update_run("r1", status=RunStatus.SUCCESS, end_time=2.0)
    run = storage.get_run("r1")
    assert (run.status, run.end_time) == (RunStatus.SUCCESS, 2.0)


def test_update_unknown_run_is_an_error(storage) -> None:
    with pytest.raises(StorageError, match="no such run"):
        storage.update_run("nope", status=RunStatus.SUCCESS)


def test_duplicate_run_id_is_an_error(storage) -> None:
    storage.create_run(RunRecord("r1", "job", tags={"a": "1"}))
    with pytest.raises(StorageError, match="already in"):
        storage.create_run(RunRecord("r1", "other", tags={"b": "2"}))
    assert storage.get_run("r1").job_name == "job"
    assert storage.list_runs(tags={"b": "2"}) == []  # the failed create left nothing


def test_event_round_trip_of_every_field(storage) -> None:
    events = [
        Event(
            run_id="r1",
            seq=1,
            timestamp=1700000000.123456,
            event_type=EventType.STEP_FAILURE,
            step_key="load[2]",
            level=logging.ERROR,
            message="boom: ünïcode ✓\nsecond line",
            data={"error": {"type": "ValueError", "stack": ["a", "b"]}, "n": 1, "ok": False},
            attempt=3,
        ),
        Event(run_id="r1", seq=2, timestamp=2.0, event_type=EventType.RUN_FAILURE),
    ]
    storage.append_events(events)

    loaded = storage.get_events("r1")
    assert loaded == events
    assert all(type(e.event_type) is EventType for e in loaded)
    assert loaded[1].step_key is None and loaded[1].attempt is None and loaded[1].data == {}


def test_every_event_type_round_trips(storage) -> None:
    events = [Event("r1", seq, float(seq), kind) for seq, kind in enumerate(EventType, start=1)]
    storage.append_events(events)
    assert [e.event_type for e in storage.get_events("r1")] == list(EventType)


def test_data_json_cannot_hold_is_kept_as_repr(storage) -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<Thing>"

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    cycle: list = []
    cycle.append(cycle)
    storage.append_events(
        [
            Event(
                "r1",
                1,
                1.0,
                EventType.LOG,
                data={"thing": Thing(), "path": Path("/a"), "b": Broken()},
            ),
            Event("r1", 2, 1.0, EventType.LOG, data={(1, 2): "tuple key", 3: "int key"}),
            Event("r1", 3, 1.0, EventType.LOG, data={"cycle": cycle, "set": {1}}),
        ]
    )

    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    storage.append_events([Event("r1", 4, 1.0, EventType.LOG, data={"deep": deep})])

    first, second, third, fourth = (e.data for e in storage.get_events("r1"))
    assert first == {
        "thing": "<Thing>",
        "path": repr(Path("/a")),
        "b": "<Broken with a failing repr>",
    }
    assert second == {"(1, 2)": "tuple key", "3": "int key"}
    assert third == {"cycle": ["<cycle>"], "set": "{1}"}
    assert list(fourth) == ["repr"]


# -- queries --------------------------------------------------------------------------------


def test_list_runs_orders_by_start_time_then_creation(storage) -> None:
    storage.create_run(RunRecord("late", "job", start_time=30.0))
    storage.create_run(RunRecord("early", "job", start_time=10.0))
    storage.create_run(RunRecord("tie_a", "job", start_time=20.0))
    storage.create_run(RunRecord("tie_b", "job", start_time=20.0))
    storage.create_run(RunRecord("unstarted", "job"))

    ids = [r.run_id for r in storage.list_runs()]
    assert ids == ["late", "tie_b", "tie_a", "early", "unstarted"]
    assert [r.run_id for r in storage.list_runs(limit=2)] == ["late", "tie_b"]


def test_list_runs_uses_the_indexes(storage) -> None:
    conn = storage._conn

    def plan(sql: str, *params: object) -> str:
        return " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))

    assert "runs_by_job" in plan(
        "SELECT * FROM runs WHERE job_name = ? ORDER BY start_time DESC", "j"
    )
    assert "runs_by_status" in plan(
        "SELECT * FROM runs WHERE status = ? ORDER BY start_time DESC", "s"
    )
    assert "run_tags_by_tag" in plan(
        "SELECT run_id FROM run_tags WHERE key = ? AND value = ?", "k", "v"
    )
    assert "events_by_run_seq" in plan(
        "SELECT * FROM events WHERE run_id = ? AND seq > ? ORDER BY seq", "r", 0
    )
    assert "events_by_run_seq" in plan(
        "SELECT * FROM events WHERE run_id = ? AND seq > ? AND step_key = ? ORDER BY seq",
        "r",
        0,
        "s",
    )


def test_tailing_with_after_seq(storage) -> None:
    storage.append_events(make_events("r1", 5))
    seen = storage.get_events("r1")
    assert [e.seq for e in seen] == [1, 2, 3, 4, 5]

    assert storage.get_events("r1", after_seq=seen[-1].seq) == []
    storage.append_events(make_events("r1", 3, start=6))
    tail = storage.get_events("r1", after_seq=seen[-1].seq)
    assert [e.seq for e in tail] == [6, 7, 8]


def test_tailing_from_another_connection_sees_each_commit(db_path: Path, storage) -> None:
    reader = SqliteRunStorage(db_path)
    last = 0
    for batch in range(5):
        storage.append_events(make_events("r1", 10, start=batch * 10 + 1))
        new = reader.get_events("r1", after_seq=last)
        assert [e.seq for e in new] == list(range(last + 1, last + 11))
        last = new[-1].seq
    reader.close()


# -- batching -------------------------------------------------------------------------------


def test_a_10000_event_batch_is_one_transaction(storage) -> None:
    statements: list[str] = []
    storage.get_run("warm-up")  # connect before tracing
    storage._conn.set_trace_callback(statements.append)

    storage.append_events(make_events("big", 10_000, steps=10_000))

    storage._conn.set_trace_callback(None)
    assert [s for s in statements if s.split()[0] in ("BEGIN", "COMMIT")] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    events = storage.get_events("big")
    assert [e.seq for e in events] == list(range(1, 10_001))
    assert [e.seq for e in storage.get_events("big", step_key="step_42")] == [42]


def test_a_batch_with_a_stored_seq_writes_nothing(storage) -> None:
    storage.append_events(make_events("r1", 3))
    with pytest.raises(StorageError, match=r"#3\.\.#5 of run 'r1'"):
        storage.append_events(make_events("r1", 3, start=3))
    assert [e.seq for e in storage.get_events("r1")] == [1, 2, 3]


def test_empty_batch_is_a_no_op(storage) -> None:
    storage.append_events([])
    assert storage.get_events("r1") == []


# -- threads and processes ------------------------------------------------------------------


def test_threads_share_one_storage(storage) -> None:
    threads_count, batches, batch_size = 8, 20, 50
    barrier = threading.Barrier(threads_count, timeout=JOIN_TIMEOUT)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        run_id = f"thread-{index}"
        try:
            barrier.wait()
            storage.create_run(RunRecord(run_id, "job", tags={"thread": str(index)}))
            for batch in range(batches):
                storage.append_events(make_events(run_id, batch_size, start=batch * batch_size + 1))
                storage.get_events(run_id, after_seq=batch * batch_size)  # reads interleave
            storage.update_run(run_id, status=RunStatus.SUCCESS, end_time=1.0)
        except BaseException as error:  # surfaced by the assert below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
        assert not thread.is_alive()

    assert errors == []
    expected = list(range(1, batches * batch_size + 1))
    for index in range(threads_count):
        assert [e.seq for e in storage.get_events(f"thread-{index}")] == expected
    assert len(storage.list_runs(status=RunStatus.SUCCESS)) == threads_count


def start_and_join(processes: list[multiprocessing.process.BaseProcess]) -> None:
    """Start the processes and wait for them; kill any still running after the timeout."""
    for process in processes:
        process.start()
    for process in processes:
        process.join(JOIN_TIMEOUT)
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(JOIN_TIMEOUT)


def _write_runs(path: str, worker: int, runs: int, batches: int, size: int, barrier) -> None:
    """A coordinator process: opens the (maybe not yet created) db when all start at once."""
    barrier.wait()
    storage = SqliteRunStorage(path)
    for run in range(runs):
        run_id = f"w{worker}-r{run}"
        storage.create_run(RunRecord(run_id, "job", start_time=float(run)))
        for batch in range(batches):
            storage.append_events(make_events(run_id, size, start=batch * size + 1))
        storage.update_run(run_id, status=RunStatus.SUCCESS, end_time=1.0)
    storage.close()


def test_processes_write_different_runs_to_one_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "runs.db"  # not created yet: the processes race to create it
    workers, runs, batches, size = 4, 5, 40, 25
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers, timeout=JOIN_TIMEOUT)
    processes = [
        context.Process(target=_write_runs, args=(str(path), w, runs, batches, size, barrier))
        for w in range(workers)
    ]
    start_and_join(processes)
    assert [p.exitcode for p in processes] == [0] * workers  # a StorageError would exit 1

    storage = SqliteRunStorage(path)
    assert len(storage.list_runs(status=RunStatus.SUCCESS)) == workers * runs
    expected = list(range(1, batches * size + 1))
    for w in range(workers):
        for run in range(runs):
            assert [e.seq for e in storage.get_events(f"w{w}-r{run}")] == expected
    storage.close()


def _append_with_inherited(storage: SqliteRunStorage) -> None:
    storage.append_events(make_events("child", 100))
    storage.close()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_a_forked_child_opens_its_own_connection(storage) -> None:
    storage.append_events(make_events("parent", 10))  # the parent's connection is open
    parent_conn = storage._conn

    child = multiprocessing.get_context("fork").Process(
        target=_append_with_inherited, args=(storage,)
    )
    start_and_join([child])
    assert child.exitcode == 0

    assert storage._conn is parent_conn  # the child did not close the parent's connection
    storage.append_events(make_events("parent", 10, start=11))
    assert len(storage.get_events("parent")) == 20
    assert len(storage.get_events("child")) == 100


def test_pickles_as_its_path(db_path: Path, storage) -> None:
    storage.create_run(RunRecord("r1", "job"))
    copy = pickle.loads(pickle.dumps(storage))
    assert copy.path == storage.path and copy.timeout == storage.timeout
    assert copy.get_run("r1") is not None
    copy.close()
