"""``CeleryConfig``: the ``execution: {celery: {...}}`` section, shared by the executor and
``plait celery worker``, and the Celery settings built from it.

Celery's own defaults suit short, idempotent web tasks; plait steps are long, write
outputs, and must survive a worker dying. So plait sets, unless the user overrides them:

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only
  after the step finished, so a worker killed mid-step gives it back to the queue.
- ``worker_prefetch_multiplier=1``: a worker holds no queued step it is not running, so a
  slow step cannot starve others waiting behind it on a busy worker.
- JSON only (``task_serializer``, ``result_serializer``, ``accept_content``): a worker
  never unpickles anything that came through the broker. These cannot be overridden.
- Redis ``visibility_timeout`` (seconds an unacknowledged message stays with a worker
  before Redis hands it to another): checked against the longest op ``timeout``.
- priorities on (Redis ``priority_steps``, RabbitMQ ``x-max-priority``): see
  ``celery_priority``.
- a bounded broker connect at start (``broker_connection_timeout``,
  ``broker_connection_retry_on_startup=False``): an unreachable broker is an error, not a hang.
- ``worker_lost_wait=2``: a pool process's death is reported after 2 s, not 10 (plait's
  outcomes do not travel through the pool's result pipe, so there is nothing to wait for).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
PRIORITY_SPAN = 4
"""plait priorities -4..4 map onto Celery's 9 levels (0..8); beyond that they are clamped."""
REDIS_SCHEMES = frozenset({"redis", "rediss"})
JSON_ONLY = {
    "task_serializer": "json",
    "result_serializer": "json",
    "event_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": ["json"],
}


class CeleryConfig(BaseModel):
    """Where the fleet is and how plait uses it. The same keys configure workers
    (``plait celery worker --config file.yaml``), so both sides agree."""

    model_config = ConfigDict(extra="forbid")

    broker: str = Field(DEFAULT_BROKER, description="Broker URL (redis://, rediss://, amqp://).")
    backend: str | None = Field(
        None,
        description="Redis URL (redis:// or rediss://) for plait's reply stream, outcome "
        "records and worker heartbeats; also Celery's result_backend. Default: the broker "
        "URL when it is Redis.",
    )
    queue: str = Field("plait", description="Queue for ops without a 'celery/queue' tag.")
    include: list[str] = Field(
        default_factory=list, description="Modules workers import at start (warm job code)."
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="Extra Celery settings (app.conf), e.g. broker_pool_limit."
    )
    worker_wait_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds a step may wait for a worker to pick it up before plait asks "
        "whether any worker consumes its queue; if none does, the attempt fails as 'lost'.",
    )
    max_concurrent: int = Field(64, ge=1, description="Steps sent to the broker at once.")
    visibility_timeout: float = Field(
        3600.0,
        gt=0,
        description="Redis: seconds before an unacknowledged step is handed to another "
        "worker. Must exceed every op timeout. Set the same value on the workers.",
    )
    lost_after: float = Field(
        30.0,
        gt=0,
        description="Seconds a started step may go unaccounted for (its worker silent, or no "
        "longer running it) before the attempt fails as 'lost'.",
    )
    health_check_interval: float = Field(
        5.0, gt=0, description="Seconds between health checks of in-flight steps."
    )
    max_redeliveries: int = Field(
        2,
        ge=0,
        description="Times a step whose worker process died is redelivered (same attempt) "
        "before the attempt fails as 'crash' and the op's RetryPolicy decides.",
    )
    connect_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait when connecting to the broker or backend."
    )

    @field_validator("backend")
    @classmethod
    def _no_rpc_backend(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("rpc://"):
            raise ValueError(
                "the rpc:// result backend sends each result as a message to the one client "
                "that sent the task: an outcome is lost when that client reconnects, and "
                "nothing else can look it up. Use a Redis backend, e.g. redis://host:6379/1"
            )
        return value

    @field_validator("config")
    @classmethod
    def _json_only(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, wanted in JSON_ONLY.items():
            if key in value and value[key] != wanted:
                raise ValueError(
                    f"config.{key}={value[key]!r}: plait's Celery messages are JSON only "
                    f"(workers never unpickle what comes through the broker); leave {key} "
                    "unset"
                )
        return value

    @model_validator(mode="after")
    def _redis_backend(self) -> CeleryConfig:
        backend = self.result_backend
        if scheme_of(backend) not in REDIS_SCHEMES:
            raise ValueError(
                f"backend {safe_url(backend)!r}: plait needs a Redis result backend "
                "(redis:// or rediss://), which also carries live events and outcomes; "
                "the broker may be RabbitMQ"
            )
        return self

    @property
    def result_backend(self) -> str:
        if self.backend:
            return self.backend
        return self.broker if scheme_of(self.broker) in REDIS_SCHEMES else ""

    @property
    def broker_is_redis(self) -> bool:
        return scheme_of(self.broker) in REDIS_SCHEMES

    @property
    def effective_visibility_timeout(self) -> float:
        options = self.config.get("broker_transport_options") or {}
        return float(options.get("visibility_timeout", self.visibility_timeout))


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower() if url else ""


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if not url:
        return url
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)


def same_server(url_a: str, url_b: str) -> bool:
    """Whether two Redis URLs point at one server (databases may differ)."""
    a, b = urlsplit(url_a), urlsplit(url_b)
    return (a.hostname or "localhost", a.port or 6379) == (b.hostname or "localhost", b.port or 6379)


def celery_priority(priority: int, broker_is_redis: bool) -> int:
    """Celery's priority for a plait ``plait/priority`` tag (higher runs first).

    plait 0 is Celery's middle level 4; each plait step up or down is one level, clamped
    to -4..4. Redis orders 0 first, RabbitMQ 8 first, so the scale is flipped for Redis.
    """
    clamped = max(-PRIORITY_SPAN, min(PRIORITY_SPAN, int(priority)))
    return PRIORITY_SPAN - clamped if broker_is_redis else PRIORITY_SPAN + clamped


def celery_settings(config: CeleryConfig) -> dict[str, Any]:
    """Celery ``app.conf`` for ``config``: plait's safe defaults, then the user's
    ``config`` mapping (except serializers, which stay JSON)."""
    settings: dict[str, Any] = {
        "broker_url": config.broker,
        "result_backend": config.result_backend,
        "include": list(config.include),
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_default_queue": config.queue,
        "task_default_priority": PRIORITY_SPAN,
        "task_queue_max_priority": 2 * PRIORITY_SPAN,
        "broker_connection_timeout": config.connect_timeout,
        "broker_connection_retry_on_startup": False,
        "result_expires": 86400,
        "result_backend_transport_options": {
            "socket_connect_timeout": config.connect_timeout,
        },
        "redis_socket_connect_timeout": config.connect_timeout,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_lost_wait": 2.0,
        "broker_channel_error_retry": True,
        **JSON_ONLY,
    }
    transport: dict[str, Any] = {}
    if config.broker_is_redis:
        transport = {
            "visibility_timeout": config.visibility_timeout,
            "priority_steps": list(range(2 * PRIORITY_SPAN + 1)),
            "queue_order_strategy": "priority",
        }
    user = dict(config.config)
    transport.update(user.pop("broker_transport_options", None) or {})
    settings.update(user)
    settings["broker_transport_options"] = transport
    settings.update(JSON_ONLY)
    return settings
