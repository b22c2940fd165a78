"""A stand-in executor module whose own dependency is not installed (registry tests)."""

import a_dependency_that_is_not_installed  # noqa: F401

Executor = None
