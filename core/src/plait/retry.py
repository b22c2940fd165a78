"""Retrying steps: ``RetryPolicy`` on an op or job, ``Failure`` / ``RetryRequested`` from op code.

The policy applies to every failure kind alike (error, crash, lost, timeout), on every
executor, because only the coordinator decides whether a failed attempt is retried.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from typing import Any


class Backoff(enum.StrEnum):
    """How the delay grows between attempts."""

    LINEAR = "linear"  # delay * n
    EXPONENTIAL = "exponential"  # delay * 2**(n-1)


class Jitter(enum.StrEnum):
    """Randomness added to the delay, so that many failed steps do not retry in lockstep."""

    FULL = "full"  # uniform in [0, delay]
    PLUS_MINUS = "plus_minus"  # delay +/- the base delay, never below 0


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a failed step up to ``max_retries`` times, waiting ``delay`` seconds (grown by
    ``backoff``, randomised by ``jitter``) before each retry."""

    max_retries: int = 1
    delay: float | None = None
    backoff: Backoff | None = Backoff.EXPONENTIAL
    jitter: Jitter | None = Jitter.FULL

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"RetryPolicy.max_retries must be >= 0, got {self.max_retries}")
        if self.delay is not None and self.delay < 0:
            raise ValueError(f"RetryPolicy.delay must be >= 0 seconds, got {self.delay}")

    def delay_for(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        base = self.delay or 0.0
        if base == 0:
            return 0.0
        if self.backoff is Backoff.EXPONENTIAL:
            wait = base * 2 ** (retry_number - 1)
        elif self.backoff is Backoff.LINEAR:
            wait = base * retry_number
        else:
            wait = base
        rand = rng or random
        if self.jitter is Jitter.FULL:
            wait = rand.uniform(0, wait)
        elif self.jitter is Jitter.PLUS_MINUS:
            wait = max(0.0, wait + rand.uniform(-base, base))
        return wait


class Failure(Exception):
    """Raise from an op to fail its step with a clear description and metadata.

    ``allow_retries=False`` stops the op's RetryPolicy from retrying this failure.
    """

    def __init__(
        self,
        description: str = "",
        metadata: dict[str, Any] | None = None,
        allow_retries: bool = True,
    ) -> None:
        super().__init__(description)
        self.description = description
        self.metadata = dict(metadata or {})
        self.allow_retries = allow_retries


class RetryRequested(Exception):
    """Raise from an op to ask for a retry, whatever its RetryPolicy says."""

    def __init__(self, max_retries: int = 1, seconds_to_wait: float = 0.0) -> None:
        super().__init__(f"retry requested (max_retries={max_retries})")
        self.max_retries = max_retries
        self.seconds_to_wait = seconds_to_wait


@dataclass(frozen=True)
class RetryDecision:
    """What the coordinator does after a failed attempt."""

    retry: bool
    delay: float = 0.0
    reason: str = ""
    data: dict[str, Any] = field(default_factory=dict)
