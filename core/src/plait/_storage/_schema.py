"""The SQLite run-storage schema, as a list of migrations.

``MIGRATIONS[n]`` takes a database from schema version ``n`` to ``n + 1``; the version a
database is at lives in ``PRAGMA user_version`` (0 = empty file). To change the schema,
append a migration; never edit one that has shipped, since existing databases already ran it.

Tables:

- ``runs``: one row per run. ``run_config`` and ``tags`` are JSON text; ``job_pickle`` is the
  cloudpickled job. Indexed by job name, status and start time, for ``list_runs``.
- ``run_tags``: one row per (run, tag), so a tag filter is an index lookup instead of a
  scan of every run's JSON.
- ``events``: the event log, one row per event. ``(run_id, seq)`` is unique: it orders a
  run's log and makes tailing (``seq > ?``) an index range scan. "The events of one step"
  scans its run's events: an index on ``step_key`` would halve append throughput to save
  ~30 ms on a 100,000-event run (bench/event_log.py).
"""

from __future__ import annotations

_V1 = (
    """
    CREATE TABLE runs (
        run_id        TEXT PRIMARY KEY,
        job_name      TEXT NOT NULL,
        status        TEXT NOT NULL,
        run_config    TEXT NOT NULL,
        tags          TEXT NOT NULL,
        parent_run_id TEXT,
        start_time    REAL,
        end_time      REAL,
        job_pointer   TEXT,
        job_pickle    BLOB
    )
    """,
    "CREATE INDEX runs_by_start ON runs (start_time)",
    "CREATE INDEX runs_by_job ON runs (job_name, start_time)",
    "CREATE INDEX runs_by_status ON runs (status, start_time)",
    """
    CREATE TABLE run_tags (
        run_id TEXT NOT NULL,
        key    TEXT NOT NULL,
        value  TEXT NOT NULL,
        PRIMARY KEY (run_id, key)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX run_tags_by_tag ON run_tags (key, value)",
    """
    CREATE TABLE events (
        id         INTEGER PRIMARY KEY,
        run_id     TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        timestamp  REAL NOT NULL,
        event_type TEXT NOT NULL,
        step_key   TEXT,
        level      INTEGER NOT NULL,
        message    TEXT NOT NULL,
        data       TEXT NOT NULL,
        attempt    INTEGER
    )
    """,
    "CREATE UNIQUE INDEX events_by_run_seq ON events (run_id, seq)",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)
"""The newest schema this code knows; a database at a higher version is refused."""
