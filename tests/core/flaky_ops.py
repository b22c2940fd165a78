"""Ops for re-execution tests: each appends its step key to a counter file, so a test
proves which steps really ran in each run; a flag file decides whether ``transform``
fails, so a failure can be "fixed" between a parent run and its re-execution."""

from __future__ import annotations

from pathlib import Path

from plait import Config, op


class Files(Config):
    counter: str
    flag: str


def count(cfg: Files, step_key: str) -> None:
    with open(cfg.counter, "a") as f:
        f.write(step_key + "\n")


@op
def extract(cfg: Files) -> list[int]:
    count(cfg, "extract")
    return [1, 2, 3]


@op
def transform(cfg: Files, xs: list[int]) -> int:
    count(cfg, "transform")
    if not Path(cfg.flag).exists():
        raise ValueError(f"flag file {cfg.flag} is missing")
    return sum(xs)
