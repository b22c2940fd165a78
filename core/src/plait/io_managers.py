"""``ConfigurableFsspecIOManager``: an ``FsspecIOManager`` whose settings come from run config.

Core configures only ``ConfigurableResource`` resources from ``resources.<key>.config``
and uses only ``IOManager`` resources as IO managers; this class is both, and hands every
call to an ``FsspecIOManager`` built from its fields. It is the default IO manager of a
persistent ``Instance``, so a job's storage moves from a laptop folder to S3 with run
config alone, no code change::

    resources:
      io_manager:
        config:
          base_url: s3://my-bucket/plait
          storage_options: {client_kwargs: {endpoint_url: "http://127.0.0.1:9000"}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from plait_io import InputContext, IOManager, OutputContext, StoredOutput
from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError, ValidationError

from plait.config import ConfigurableResource

if TYPE_CHECKING:
    from plait_io import FsspecIOManager

__all__ = ["ConfigurableFsspecIOManager"]


class ConfigurableFsspecIOManager(ConfigurableResource, IOManager):
    """``FsspecIOManager`` settings as a resource: ``base_url`` (any fsspec URL or a local
    path), ``storage_options`` (for the filesystem, e.g. s3fs's ``client_kwargs``) and
    the default ``serializer`` (``cloudpickle``, ``pickle``, ``json`` or ``bytes``).

    A local ``base_url`` is made absolute where the config is validated (the coordinator),
    so it names the same folder in every worker process of this machine.
    """

    base_url: str
    storage_options: dict[str, Any] = Field(default_factory=dict)
    serializer: str = "cloudpickle"

    _manager: FsspecIOManager = PrivateAttr()

    @field_validator("serializer")
    @classmethod
    def _known_serializer(cls, name: str) -> str:
        from plait_io import check_serializer

        # ValueError listing the known ones -> reported at resources.<key>.config.serializer
        return check_serializer(name)

    @model_validator(mode="after")
    def _build(self) -> ConfigurableFsspecIOManager:
        manager = self._make_manager()
        self.base_url = manager.base_url
        self._manager = manager
        return self

    def _make_manager(self) -> FsspecIOManager:
        """The manager these fields describe; a subclass with more fields (e.g.
        ``plait_pandas.ConfigurableParquetIOManager``) builds its own kind here."""
        from plait_io import FsspecIOManager

        return FsspecIOManager(self.base_url, self.storage_options, self.serializer)

    @property
    def manager(self) -> FsspecIOManager:
        """The ``FsspecIOManager`` doing the work."""
        return self._manager

    def handle_output(self, context: OutputContext, obj: Any) -> StoredOutput:
        return self._manager.handle_output(context, obj)

    def load_input(self, context: InputContext) -> Any:
        return self._manager.load_input(context)

    def preflight(self) -> None:
        self._manager.preflight()

    def describe(self) -> str:
        return self._manager.describe()

    def load_location(self, location: str) -> Any:
        """Load an object by the location an event reported (for inspection)."""
        return self._manager.load_location(location)

    def has_output(self, context: OutputContext) -> bool:
        return self._manager.has_output(context)

    def location_for(self, context: OutputContext) -> str:
        """The URL an output is (or would be) stored at."""
        return self._manager.location_for(context)

    def __repr__(self) -> str:
        # never pydantic's repr: it would print storage_options secrets as they are
        return f"{type(self).__name__}({self._manager!r})"

    __str__ = __repr__


def fsspec_io_from_config(config: Mapping[str, Any]) -> ConfigurableFsspecIOManager:
    """The IO manager run config asks for where there is no storage folder to default to
    (an ephemeral instance), so ``base_url`` is required; every problem is reported."""
    try:
        return ConfigurableFsspecIOManager.model_validate(dict(config))
    except ValidationError as exc:
        problems: list[Any] = []
        for err in exc.errors():
            if err["type"] == "missing" and err["loc"] == ("base_url",):
                message, value = _BASE_URL_REQUIRED, None  # not the config: it holds secrets
            else:
                message, value = err["msg"], err["input"]
            problems.append({"type": PydanticCustomError(err["type"], message),
                             "loc": err["loc"], "input": value})
        raise ValidationError.from_exception_data(exc.title, problems) from None


_BASE_URL_REQUIRED = (
    "required: an ephemeral instance has no storage folder, so say where step outputs go: "
    "a local path or an fsspec URL such as s3://bucket/prefix (or run on a persistent "
    "Instance(), whose outputs go under its home folder)"
)
