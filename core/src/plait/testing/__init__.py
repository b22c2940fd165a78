"""``plait.testing``: the executor conformance suite, for plait's executors and yours.

Every executor must pass the same cases with the same results as ``in_process``: the
same outputs, the same event types per step, the same run status and the same error
messages. A third-party executor runs the suite against itself with::

    import pytest
    from plait.testing import ExecutorConformance

    class TestMyExecutor(ExecutorConformance):
        executor_name = "mine"            # its name in the plait.executors entry points

        @pytest.fixture
        def executor_config(self):        # its config (e.g. the address of a test cluster)
            return {"address": "..."}

The suite needs pytest (a test helper, not a runtime dependency). The jobs themselves
(``plait.testing.jobs``) import without pytest, so workers can load them by code pointer.
"""

from typing import Any

__all__ = ["CASES", "Case", "ExecutorConformance", "run_case", "signature"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from plait.testing import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module 'plait.testing' has no attribute {name!r}")
