"""What every RunStorage must do, run against each implementation unchanged."""

from __future__ import annotations

import logging

import pytest
from plait._storage.base import InMemoryRunStorage, RunRecord, RunStatus, RunStorage
from plait._storage.sqlite import SqliteRunStorage
from plait.events import Event, EventType


@pytest.fixture(params=["memory", "sqlite"])
def storage(request, tmp_path):
    storage: RunStorage = (
        InMemoryRunStorage()
        if request.param == "memory"
        else SqliteRunStorage(tmp_path / "runs.db")
    )
    yield storage
    storage.close()


@pytest.fixture
def runs(storage: RunStorage) -> RunStorage:
    """Five runs, created in start-time order (the in-memory storage orders by creation)."""
    specs = [
        ("r1", "etl", RunStatus.SUCCESS, {"team": "a", "env": "prod"}),
        ("r2", "etl", RunStatus.FAILURE, {"team": "a", "env": "dev"}),
        ("r3", "report", RunStatus.SUCCESS, {"team": "b", "env": "prod"}),
        ("r4", "etl", RunStatus.STARTED, {"team": "b"}),
        ("r5", "report", RunStatus.CANCELED, {}),
    ]
    for start, (run_id, job, status, tags) in enumerate(specs):
        storage.create_run(
            RunRecord(run_id, job, status=status, tags=tags, start_time=float(start))
        )
    return storage


def ids(records) -> list[str]:
    return [r.run_id for r in records]


def test_list_runs_newest_first(runs: RunStorage) -> None:
    assert ids(runs.list_runs()) == ["r5", "r4", "r3", "r2", "r1"]
    assert ids(runs.list_runs(limit=2)) == ["r5", "r4"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"job_name": "etl"}, ["r4", "r2", "r1"]),
        ({"status": RunStatus.SUCCESS}, ["r3", "r1"]),
        ({"tags": {"team": "a"}}, ["r2", "r1"]),
        ({"tags": {"team": "b", "env": "prod"}}, ["r3"]),
        ({"tags": {"env": "prod"}, "job_name": "etl"}, ["r1"]),
        ({"job_name": "etl", "status": RunStatus.SUCCESS, "limit": 1}, ["r1"]),
        ({"tags": {"team": "c"}}, []),
        ({"job_name": "nope"}, []),
    ],
)
def test_list_runs_filters(runs: RunStorage, filters: dict, expected: list[str]) -> None:
    assert ids(runs.list_runs(**filters)) == expected


def test_get_run_and_update(runs: RunStorage) -> None:
    runs.update_run("r4", status=RunStatus.SUCCESS, end_time=9.0)
    run = runs.get_run("r4")
    assert (run.job_name, run.status, run.end_time, run.tags) == (
        "etl",
        RunStatus.SUCCESS,
        9.0,
        {"team": "b"},
    )
    assert runs.get_run("nope") is None


@pytest.fixture
def logged(storage: RunStorage) -> RunStorage:
    kinds = [
        (EventType.RUN_START, None, logging.DEBUG),
        (EventType.STEP_START, "a", logging.DEBUG),
        (EventType.LOG, "a", logging.WARNING),
        (EventType.STEP_SUCCESS, "a", logging.INFO),
        (EventType.STEP_START, "b", logging.DEBUG),
        (EventType.STEP_FAILURE, "b", logging.ERROR),
        (EventType.RUN_FAILURE, None, logging.ERROR),
    ]
    storage.append_events(
        [
            Event("run", seq, float(seq), kind, step_key=step, level=level, message=f"m{seq}")
            for seq, (kind, step, level) in enumerate(kinds, start=1)
        ]
    )
    storage.append_events([Event("other", 1, 1.0, EventType.RUN_START)])
    return storage


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, [1, 2, 3, 4, 5, 6, 7]),
        ({"step_key": "a"}, [2, 3, 4]),
        ({"event_types": [EventType.STEP_START]}, [2, 5]),
        ({"event_types": {EventType.RUN_START, EventType.RUN_FAILURE}}, [1, 7]),
        ({"event_types": []}, []),
        ({"min_level": logging.WARNING}, [3, 6, 7]),
        ({"after_seq": 4}, [5, 6, 7]),
        ({"after_seq": 7}, []),
        ({"step_key": "b", "min_level": logging.INFO, "after_seq": 1}, [6]),
    ],
)
def test_get_events_filters(logged: RunStorage, filters: dict, expected: list[int]) -> None:
    events = logged.get_events("run", **filters)
    assert [e.seq for e in events] == expected
    assert all(e.run_id == "run" for e in events)


def test_events_of_an_unknown_run(logged: RunStorage) -> None:
    assert logged.get_events("nope") == []
