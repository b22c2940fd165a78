"""Shared fixtures. Real services live in tests/services/, one module each."""

pytest_plugins = []
