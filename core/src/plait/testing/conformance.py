"""The conformance cases and the pytest mixin that runs them on one executor.

Each case runs on the executor under test and on ``in_process`` (the reference); the
two results must have the same ``signature``: run status, the set of event types of each
step, the values of the case's outputs, and the STEP_FAILURE messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from plait import EventType, Instance, JobDefinition, RunResult, reexecute
from plait._run.run_config import deep_merge
from plait.testing import jobs


@dataclass(frozen=True)
class Case:
    """A job, how to run it, and what must come out."""

    name: str
    job: JobDefinition
    success: bool = True
    outputs: dict[tuple[str, str], Any] = field(default_factory=dict)
    """(op or step key, output name) -> expected value."""
    stateful_ops: tuple[str, ...] = ()
    """Ops that take ``StateConfig`` (a state_dir for counters and flags)."""
    run_config: dict[str, Any] = field(default_factory=dict)
    op_selection: list[str] | None = None
    failure_kinds: dict[str, str] = field(default_factory=dict)
    """step key -> expected failure kind of its STEP_FAILURE."""
    then: Callable[[RunResult, Path, Instance, str, dict[str, Any]], RunResult] | None = None
    """A follow-up (e.g. re-execution); its result is the one compared."""


def _reexecute_after_fix(first: RunResult, state_dir: Path, instance: Instance,
                         executor: str, config: dict[str, Any]) -> RunResult:
    assert not first.success, "the first run must fail before it is fixed"
    (state_dir / "fixed").write_text("yes")
    second = reexecute(first.run_id, from_failure=True, instance=instance, executor=executor,
                       raise_on_error=False)
    ran = int((state_dir / "counted_source.count").read_text())
    assert ran == 1, f"counted_source ran {ran} times: re-execution must reuse its output"
    return second


CASES: list[Case] = [
    Case("chain", jobs.chain, outputs={("c", "result"): 3}),
    Case("diamond", jobs.diamond, outputs={("add", "result"): 4}),
    Case("nested", jobs.nested, outputs={("times_two", "result"): 10,
                                         ("outer.inner.second", "result"): 5}),
    Case("wide", jobs.wide, outputs={("total", "result"): 2 * jobs.WIDTH}),
    Case("dynamic", jobs.dynamic,
         outputs={("total", "result"): sum(i * i for i in range(jobs.ITEMS))}),
    Case("optional", jobs.optional, outputs={("add_one", "result"): 2, ("split", "small"): 1}),
    Case("configured", jobs.configured, outputs={("scaled", "result"): 7},
         run_config={"ops": {"scaled": {"config": {"factor": 5}}},
                     "resources": {"offset": {"config": {"amount": 2}}}}),
    Case("type_failure", jobs.type_failure, success=False, failure_kinds={"wrong_type": "error"}),
    Case("failure", jobs.failure, success=False, failure_kinds={"fails": "error"}),
    Case("retries", jobs.retries, outputs={("add_one", "result"): 4}, stateful_ops=("flaky",)),
    Case("timeout", jobs.timeout, success=False, failure_kinds={"slow": "timeout"}),
    Case("selection", jobs.diamond, op_selection=["one", "times_two"],
         outputs={("times_two", "result"): 2}),
    Case("reexecution", jobs.reexecution, stateful_ops=("counted_source", "fail_until_fixed"),
         outputs={("add_one", "result"): 12}, then=_reexecute_after_fix),
]


def run_case(case: Case, executor: str, executor_config: dict[str, Any], home: Path) -> RunResult:
    """Run one case on one executor, with a fresh persistent instance under ``home``."""
    state_dir = home / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    stateful = {"ops": {name: {"config": {"state_dir": str(state_dir)}} for name in case.stateful_ops}}
    run_config = deep_merge(deep_merge(case.run_config, stateful),
                            {"execution": {executor: executor_config}})
    instance = Instance(home / "plait")
    result = case.job.execute(run_config=run_config, instance=instance,
                              op_selection=case.op_selection, raise_on_error=False)
    if case.then is not None:
        result = case.then(result, state_dir, instance, executor, executor_config)
    return result


def signature(case: Case, result: RunResult) -> dict[str, Any]:
    """What must be equal across executors."""
    per_step: dict[str, set[str]] = {}
    failures: dict[str, str] = {}
    for event in result.events:
        if event.step_key is not None:
            per_step.setdefault(event.step_key, set()).add(event.event_type.value)
        if event.event_type is EventType.STEP_FAILURE:
            failures[event.step_key or ""] = event.message
    outputs = {f"{key}.{name}": result.output_for(key, name) for key, name in case.outputs}
    return {"status": result.status.value, "events": per_step, "failures": failures, "outputs": outputs}


def check_case(case: Case, result: RunResult) -> None:
    """The case's own expectations, independent of the reference run."""
    failed = {e.step_key: e for e in result.events if e.event_type is EventType.STEP_FAILURE}
    assert result.success is case.success, (
        f"case {case.name}: expected success={case.success}, got {result.status}; "
        f"failures: { {k: e.message for k, e in failed.items()} }"
    )
    for (key, name), expected in case.outputs.items():
        assert result.output_for(key, name) == expected, f"case {case.name}: {key}.{name}"
    for step, kind in case.failure_kinds.items():
        assert step in failed, f"case {case.name}: step {step} did not fail"
        assert failed[step].data.get("kind") == kind, (
            f"case {case.name}: step {step} failed as {failed[step].data.get('kind')}, expected {kind}"
        )


class ExecutorConformance:
    """Subclass in a test module, set ``executor_name``, override ``executor_config``."""

    executor_name: ClassVar[str] = "in_process"

    @pytest.fixture
    def executor_config(self) -> dict[str, Any]:
        return {}

    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, executor_config: dict[str, Any], tmp_path: Path) -> None:
        result = run_case(case, self.executor_name, executor_config, tmp_path / "executor")
        check_case(case, result)
        reference = run_case(case, "in_process", {}, tmp_path / "reference")
        assert signature(case, result) == signature(case, reference)
