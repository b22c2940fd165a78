"""The conformance suite on the reference executor itself."""

from plait.testing import ExecutorConformance


class TestInProcess(ExecutorConformance):
    executor_name = "in_process"
