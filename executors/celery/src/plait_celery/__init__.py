"""plait-celery: run plait steps on a Celery worker fleet.

Select it with ``executor="celery"`` or ``execution: {celery: {...}}`` in run config;
start workers with ``plait celery worker --broker redis://host:6379/0 -Q plait``.
Importing this package does not import Celery; the names below load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait_celery.app import make_app
    from plait_celery.config import CeleryConfig
    from plait_celery.executor import CeleryExecutor

__all__ = ["CeleryConfig", "CeleryExecutor", "make_app"]

_where = {
    "CeleryConfig": "plait_celery.config",
    "CeleryExecutor": "plait_celery.executor",
    "make_app": "plait_celery.app",
}


def __getattr__(name: str) -> Any:
    if name in _where:
        import importlib

        return getattr(importlib.import_module(_where[name]), name)
    raise AttributeError(f"module 'plait_celery' has no attribute {name!r}")
