"""``plait celery ...``: the plugin the ``plait`` CLI loads from the ``plait.cli``
entry-point group. ``plait celery worker`` starts a worker that runs plait steps."""

from __future__ import annotations

from typing import Any

import click

# plait's run config, pydantic and Celery load inside the commands: `plait --help` loads this module


@click.group(help="Run plait steps on a Celery worker fleet.")
def celery() -> None:
    """The ``plait celery`` command group."""


def _file_config(path: str | None) -> dict[str, Any]:
    """The ``execution.celery`` section of a run-config file, or the file itself. Read
    like run config (``plait.load_run_config``): ``${VAR}`` and ``${VAR:-default}`` in
    string values come from the environment."""
    if path is None:
        return {}
    from plait import load_run_config
    from plait.errors import RunConfigError

    try:
        data = load_run_config(path)
    except RunConfigError as exc:
        problems = "\n".join(f"  {line}" for line in exc.errors)
        raise click.BadParameter(f"cannot use the worker config file:\n{problems}",
                                 param_hint="'-C' / '--config'") from None
    section: Any = data
    if "execution" in data:
        execution = data["execution"]
        section = execution.get("celery") if isinstance(execution, dict) else None
    if not isinstance(section, dict):
        raise click.BadParameter(f"{path}: no 'execution: {{celery: {{...}}}}' mapping",
                                 param_hint="'-C' / '--config'")
    return dict(section)


@celery.command(help="Start a worker that executes plait steps sent by `executor: celery`.")
@click.option("--broker", envvar="PLAIT_CELERY_BROKER", help="Broker URL (redis://, amqp://).")
@click.option("--backend", envvar="PLAIT_CELERY_BACKEND",
              help="Result backend URL (Redis); default: the broker when it is Redis.")
@click.option("-Q", "--queues", multiple=True,
              help="Queues to consume (repeat or comma-separate); default: the config's queue.")
@click.option("-c", "--concurrency", type=int, help="Pool processes (default: CPU count).")
@click.option("-l", "--loglevel", default="INFO", show_default=True)
@click.option("-n", "--hostname", help="Node name (default: plait<pid>@<host>).")
@click.option("-I", "--include", multiple=True, help="Module to import at start (repeatable).")
@click.option("--visibility-timeout", type=float,
              help="Redis: seconds before an unacknowledged step goes to another worker.")
@click.option("--pool", type=click.Choice(["prefork", "threads", "solo"]), default="prefork",
              show_default=True, help="prefork is needed to kill canceled or timed-out steps.")
@click.option("-C", "--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="YAML with the executor's keys (or a run config with execution.celery); "
                   "${VAR} and ${VAR:-default} are read from the environment.")
def worker(broker: str | None, backend: str | None, queues: tuple[str, ...],
           concurrency: int | None, loglevel: str, hostname: str | None,
           include: tuple[str, ...], visibility_timeout: float | None, pool: str,
           config_file: str | None) -> None:
    from plait_celery.worker import start_worker

    values = _file_config(config_file)
    for key, value in (("broker", broker), ("backend", backend),
                       ("visibility_timeout", visibility_timeout)):
        if value is not None:
            values[key] = value
    if include:
        values["include"] = [*values.get("include", []), *include]
    from pydantic import ValidationError

    from plait_celery.config import CeleryConfig

    try:
        config = CeleryConfig.model_validate(values)
    except ValidationError as exc:
        raise click.UsageError(f"invalid worker config:\n{exc}") from exc
    names = [q.strip() for item in queues for q in item.split(",") if q.strip()]
    start_worker(config, queues=names, concurrency=concurrency, loglevel=loglevel,
                 hostname=hostname, pool=pool)
