"""SQLite run storage: the persistent ``RunStorage`` behind ``Instance`` (``runs.db``).

Several coordinator processes write different runs to one file at once, so:

- WAL journal: readers (``plait runs``, a tailing UI) never block the writer, nor it them.
- Every write is one short ``BEGIN IMMEDIATE`` transaction: it takes the write lock up front,
  so a busy database makes it wait (``timeout``, 30 s) instead of failing half-way with
  "database is locked" the way a read lock upgraded to a write lock does.
- ``synchronous=NORMAL``: in WAL mode a commit then costs no fsync. A power cut may lose the
  last commits but never corrupts the file; an event log can afford that, and a 10,000-step
  run must not spend its time syncing.
- One connection per process, shared by its threads behind a lock (the coordinator appends
  from a background thread while the main thread writes too). A forked child must not touch
  its parent's connection, so the pid is checked on every use and the child opens its own.

The schema and its version live in ``_schema.py``; a file written by a newer plait is refused
rather than misread.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from plait._storage._schema import MIGRATIONS, SCHEMA_VERSION
from plait._storage.base import RunRecord, RunStatus, RunStorage
from plait.errors import StorageError
from plait.events import Event, EventType

DEFAULT_TIMEOUT = 30.0
"""Seconds a write waits for another process's transaction before giving up."""

_RUN_COLUMNS = (
    "run_id, job_name, status, run_config, tags, parent_run_id,"
    " start_time, end_time, job_pointer, job_pickle"
)
_EVENT_COLUMNS = "run_id, seq, timestamp, event_type, step_key, level, message, data, attempt"
_EVENT_TYPES = {t.value: t for t in EventType}
_decode = json.JSONDecoder().decode


class SqliteRunStorage(RunStorage):
    """Runs and their event logs in one SQLite file, safe across threads and processes."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = None
        self._inherited: list[sqlite3.Connection] = []
        with self._connection("open the database"):
            pass  # fail now, in the caller, if the file is unusable

    def __repr__(self) -> str:
        return f"SqliteRunStorage({str(self.path)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Connections do not pickle; a copy sent to another process opens its own.
        return (_reopen, (str(self.path), self.timeout))

    # -- runs ----------------------------------------------------------------------------

    def create_run(self, record: RunRecord) -> None:
        row = (
            record.run_id,
            record.job_name,
            RunStatus(record.status).value,
            _dumps(record.run_config),
            _dumps(record.tags),
            record.parent_run_id,
            record.start_time,
            record.end_time,
            record.job_pointer,
            record.job_pickle,
        )
        with self._transaction(f"create run {record.run_id!r}") as conn:
            try:
                conn.execute(f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", row)
            except sqlite3.IntegrityError:
                raise StorageError(
                    f"cannot create run {record.run_id!r}: a run with this id is already in "
                    f"{self.path}. Run ids must be unique; use a new one (e.g. uuid4)."
                ) from None
            conn.executemany(
                "INSERT INTO run_tags (run_id, key, value) VALUES (?, ?, ?)",
                [(record.run_id, str(k), str(v)) for k, v in record.tags.items()],
            )

    def update_run(self, run_id: str, *, status: RunStatus, end_time: float | None = None) -> None:
        with self._transaction(f"update run {run_id!r}") as conn:
            updated = conn.execute(
                "UPDATE runs SET status = ?, end_time = ? WHERE run_id = ?",
                (RunStatus(status).value, end_time, run_id),
            ).rowcount
        if not updated:
            raise StorageError(
                f"cannot update run {run_id!r}: no such run in {self.path}. "
                "Create it with create_run() first, or check the instance (PLAIT_HOME)."
            )

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._connection(f"read run {run_id!r}") as conn:
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return _run_from_row(row) if row else None

    def list_runs(
        self,
        *,
        job_name: str | None = None,
        status: RunStatus | None = None,
        tags: dict[str, str] | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        where: list[str] = []
        params: list[Any] = []
        if job_name is not None:
            where.append("job_name = ?")
            params.append(job_name)
        if status is not None:
            where.append("status = ?")
            params.append(RunStatus(status).value)
        for key, value in (tags or {}).items():
            where.append("run_id IN (SELECT run_id FROM run_tags WHERE key = ? AND value = ?)")
            params += [str(key), str(value)]
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        # rowid breaks ties in creation order; NULL start times sort last under DESC.
        sql += " ORDER BY start_time DESC, rowid DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        with self._connection("list runs") as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_run_from_row(row) for row in rows]

    # -- events --------------------------------------------------------------------------

    def append_events(self, events: Sequence[Event]) -> None:
        if not events:
            return
        rows = [
            (
                e.run_id,
                e.seq,
                e.timestamp,
                str(e.event_type),
                e.step_key,
                int(e.level),
                str(e.message),
                _dumps(e.data),
                e.attempt,
            )
            for e in events
        ]
        with self._transaction(f"append {len(rows)} event(s)") as conn:
            try:
                conn.executemany(
                    f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", rows
                )
            except sqlite3.IntegrityError:
                first, last = events[0], events[-1]
                raise StorageError(
                    f"cannot append events #{first.seq}..#{last.seq} of run {first.run_id!r}: "
                    f"some sequence numbers are already stored in {self.path}. Only a run's "
                    "coordinator may write its events, each seq once; nothing was written."
                ) from None

    def get_events(
        self,
        run_id: str,
        *,
        step_key: str | None = None,
        event_types: Iterable[EventType] | None = None,
        min_level: int | None = None,
        after_seq: int = 0,
    ) -> list[Event]:
        where = ["run_id = ?", "seq > ?"]
        params: list[Any] = [run_id, after_seq]
        if step_key is not None:
            where.append("step_key = ?")
            params.append(step_key)
        if event_types is not None:
            types = sorted({str(t) for t in event_types})
            if not types:
                return []
            where.append(f"event_type IN ({','.join('?' * len(types))})")
            params += types
        if min_level is not None:
            where.append("level >= ?")
            params.append(min_level)
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq"
        with self._connection(f"read events of run {run_id!r}") as conn:
            rows = conn.execute(sql, params).fetchall()
        return [self._event_from_row(row) for row in rows]

    def close(self) -> None:
        """Close this process's connection; a later call opens a new one."""
        if self._pid != os.getpid():
            self._forget_parent_connection()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    # -- connection ----------------------------------------------------------------------

    @contextmanager
    def _connection(self, doing: str) -> Iterator[sqlite3.Connection]:
        """This process's connection, held exclusively; SQLite errors become StorageError."""
        if self._pid != os.getpid():
            self._forget_parent_connection()
        with self._lock:
            started = time.monotonic()
            try:
                if self._conn is None:
                    self._conn = self._connect()
                yield self._conn
            except sqlite3.Error as error:
                waited = time.monotonic() - started
                raise StorageError(self._explain(doing, error, waited)) from error

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One write transaction that holds the write lock from its start."""
        with self._connection(doing) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _forget_parent_connection(self) -> None:
        # After fork the parent's connection (and maybe its held lock) came along. Closing
        # it here could disturb the parent's WAL, so keep it referenced and never use it.
        if self._conn is not None:
            self._inherited.append(self._conn)
        self._conn = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                self._create_file()
        except OSError as error:
            raise StorageError(
                f"cannot create run storage {self.path}: {error}. "
                "Point PLAIT_HOME at a writable folder."
            ) from error
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")  # a file plait did not create
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _create_file(self) -> None:
        """Build a new database aside, in WAL mode with its schema, then link it into place.

        Processes starting together on a fresh home would otherwise race to switch one file
        to WAL, a race SQLite reports as "database is locked" at once, without waiting.
        ``os.link`` never replaces a file, so the first one in wins and the others use it.
        """
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.unlink(missing_ok=True)  # left by a crashed process that had this pid
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
            self._migrate(conn)
        finally:
            conn.close()  # last connection: the WAL is checkpointed into the file and removed
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            pass  # another process created it first
        except OSError:  # no hard links here (FAT, some network drives): best effort
            if not self.path.exists():
                os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the file to SCHEMA_VERSION, or refuse one this code cannot read."""
        if self._schema_version(conn) == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")  # another process may be creating it right now
        try:
            found = self._schema_version(conn)
            if found == 0 and conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
                raise StorageError(
                    f"{self.path} is a SQLite database but not plait run storage (it has "
                    "tables but no plait schema version). Move it away, or point PLAIT_HOME "
                    "at another folder."
                )
            for version in range(found, SCHEMA_VERSION):
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _schema_version(self, conn: sqlite3.Connection) -> int:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise StorageError(
                f"run storage {self.path} has schema version {found}, but this plait "
                f"supports up to version {SCHEMA_VERSION}: it was written by a newer plait. "
                "Upgrade plait, or point PLAIT_HOME at another folder."
            )
        return found

    def _explain(self, doing: str, error: sqlite3.Error, waited: float) -> str:
        message = f"run storage {self.path}: could not {doing}: {error}."
        if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
            return (
                f"{message} Another connection kept it locked (waited {waited:.1f} s of the "
                f"{self.timeout:g} s timeout); retry, or raise the storage timeout."
            )
        if isinstance(error, sqlite3.DatabaseError) and not isinstance(
            error, sqlite3.OperationalError | sqlite3.IntegrityError
        ):
            return (
                f"{message} The file is not a (readable) SQLite database. Move it away, or "
                "point PLAIT_HOME at another folder."
            )
        return message

    def _event_from_row(self, row: tuple[Any, ...]) -> Event:
        run_id, seq, timestamp, event_type, step_key, level, message, data, attempt = row
        try:
            kind = _EVENT_TYPES[event_type]
        except KeyError:
            raise StorageError(
                f"event #{seq} of run {run_id!r} in {self.path} has type {event_type!r}, "
                f"which this plait does not know (known: {', '.join(sorted(_EVENT_TYPES))}). "
                "It was written by a newer plait: upgrade plait."
            ) from None
        data = {} if data == "{}" else _decode(data)
        return Event(run_id, seq, timestamp, kind, step_key, level, message, data, attempt)


def _reopen(path: str, timeout: float) -> SqliteRunStorage:
    return SqliteRunStorage(path, timeout=timeout)


def _run_from_row(row: tuple[Any, ...]) -> RunRecord:
    (run_id, job_name, status, run_config, tags, parent, start, end, pointer, pickle) = row
    return RunRecord(
        run_id=run_id,
        job_name=job_name,
        status=RunStatus(status),
        run_config=_decode(run_config),
        tags=_decode(tags),
        parent_run_id=parent,
        start_time=start,
        end_time=end,
        job_pointer=pointer,
        job_pickle=pickle,
    )


def _dumps(value: Any) -> str:
    """JSON text for ``value`` that never raises: logging an event must not fail a run.

    Values JSON cannot hold become their ``repr``; non-string keys become strings.
    """
    try:
        return _ENCODER.encode(value if value is not None else {})
    except (TypeError, ValueError, RecursionError):  # tuple keys, a reference cycle...
        pass
    try:
        return _ENCODER.encode(_jsonable(value, set()))
    except RecursionError:  # nested deeper than Python recurses
        return _ENCODER.encode({"repr": _repr(value)})


def _jsonable(value: Any, seen: set[int]) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if id(value) in seen:
        return "<cycle>"
    if isinstance(value, dict):
        inner = seen | {id(value)}
        return {_key(k): _jsonable(v, inner) for k, v in value.items()}
    if isinstance(value, list | tuple):
        inner = seen | {id(value)}
        return [_jsonable(v, inner) for v in value]
    return _repr(value)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else _repr(key)


def _repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} with a failing repr>"


# Built once: json.dumps() with options builds a new encoder per call, ~40% slower.
_ENCODER = json.JSONEncoder(default=_repr, separators=(",", ":"))
