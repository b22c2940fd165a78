"""Every executor discovered through the ``plait.executors`` entry points passes the
conformance suite unchanged, against the real engines started by tests/services/.

``in_process`` is the reference (and runs the suite through the public
``ExecutorConformance`` mixin in test_in_process.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from plait.executors.registry import executor_names
from plait.testing.conformance import CASES, Case, check_case, run_case, signature

# how to reach a test instance of each engine; an executor not listed here (a third-party
# one installed in this environment) runs with its default config
ENGINE_CONFIG: dict[str, Callable[[pytest.FixtureRequest], dict[str, Any]]] = {
    "multiprocess": lambda request: {"max_concurrent": 2},
    "dask": lambda request: {"address": request.getfixturevalue("dask_address")},
    "celery": lambda request: request.getfixturevalue("celery_fleet").config(),
}

_reference: dict[str, dict[str, Any]] = {}


def _reference_signature(case: Case, tmp_path: Path) -> dict[str, Any]:
    if case.name not in _reference:
        result = run_case(case, "in_process", {}, tmp_path / "reference")
        _reference[case.name] = signature(case, result)
    return _reference[case.name]


@pytest.mark.parametrize("executor", [n for n in executor_names() if n != "in_process"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_executor_conforms(executor: str, case: Case, request: pytest.FixtureRequest,
                           tmp_path: Path) -> None:
    config = ENGINE_CONFIG.get(executor, lambda request: {})(request)
    result = run_case(case, executor, config, tmp_path / executor)
    check_case(case, result)
    assert signature(case, result) == _reference_signature(case, tmp_path)
