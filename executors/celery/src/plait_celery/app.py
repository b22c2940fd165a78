"""The Celery app both sides build from one ``CeleryConfig``: the executor sends with it,
``plait celery worker`` consumes with it. Building it from the same config is what keeps
the two in agreement (serializers, priority steps, visibility timeout)."""

from __future__ import annotations

from celery import Celery

from plait_celery.config import CeleryConfig, celery_settings
from plait_celery.tasks import TASK_NAME, PlaitTask, run_step


def make_app(config: CeleryConfig, main: str = "plait") -> Celery:
    """A Celery app with plait's settings and the ``plait.run_step`` task registered."""
    app = Celery(main, set_as_current=False)
    app.conf.update(celery_settings(config))
    app.task(name=TASK_NAME, bind=True, base=PlaitTask)(run_step)
    return app
