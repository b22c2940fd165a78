"""Run events: what happened in a run, in order.

Steps produce ``StepEvent`` records wherever they run; only the coordinator turns them into
``Event`` records (adding the run's sequence number) and writes them, so every run has one
ordered, gap-free log whatever the executor.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Any


class EventType(enum.StrEnum):
    RUN_START = "RUN_START"
    RUN_SUCCESS = "RUN_SUCCESS"
    RUN_FAILURE = "RUN_FAILURE"
    RUN_CANCELED = "RUN_CANCELED"
    STEP_START = "STEP_START"
    STEP_INPUT = "STEP_INPUT"
    STEP_OUTPUT = "STEP_OUTPUT"
    STEP_SUCCESS = "STEP_SUCCESS"
    STEP_FAILURE = "STEP_FAILURE"
    STEP_SKIPPED = "STEP_SKIPPED"
    STEP_UP_FOR_RETRY = "STEP_UP_FOR_RETRY"
    LOG = "LOG"
    HANDLED_OUTPUT = "HANDLED_OUTPUT"
    LOADED_INPUT = "LOADED_INPUT"

    def __str__(self) -> str:
        return self.value


RUN_END_TYPES = frozenset({EventType.RUN_SUCCESS, EventType.RUN_FAILURE, EventType.RUN_CANCELED})


@dataclass(frozen=True)
class StepEvent:
    """An event produced while one step attempt runs, before the coordinator numbers it.

    ``index`` counts events within the attempt, so that an event that reached the
    coordinator live (a log line) is not recorded again when the step's outcome arrives.
    """

    event_type: EventType
    step_key: str
    attempt: int
    index: int
    timestamp: float
    message: str = ""
    level: int = logging.INFO
    data: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""


@dataclass(frozen=True)
class Event:
    """One recorded event of a run. ``seq`` orders a run's events from 1, without gaps."""

    run_id: str
    seq: int
    timestamp: float
    event_type: EventType
    step_key: str | None = None
    level: int = logging.INFO
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    attempt: int | None = None

    @property
    def level_name(self) -> str:
        return logging.getLevelName(self.level)

    def __str__(self) -> str:
        where = f" {self.step_key}" if self.step_key else ""
        return f"#{self.seq} {self.event_type.value}{where}: {self.message}"
