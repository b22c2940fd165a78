"""Run config of the Dask executor (``execution: {dask: {...}}``).

Either ``address`` names a running scheduler, or plait starts a ``LocalCluster`` for the
run from the local-cluster settings and stops it afterwards. The two are exclusive, so a
typo cannot silently start a local cluster when a remote one was meant.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

LOCAL_CLUSTER_FIELDS = ("n_workers", "threads_per_worker", "processes", "memory_limit", "cluster_kwargs")


class DaskConfig(BaseModel):
    """Where the steps run and how plait talks to the cluster."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        None, description="Scheduler of an existing cluster, e.g. tcp://scheduler:8786."
    )
    n_workers: int | None = Field(None, ge=1, description="LocalCluster: worker count.")
    threads_per_worker: int | None = Field(None, ge=1, description="LocalCluster: threads each.")
    processes: bool | None = Field(None, description="LocalCluster: workers in processes (default).")
    memory_limit: str | float | None = Field(
        None, description="LocalCluster: per-worker memory limit, e.g. '4GiB' or 'auto'."
    )
    cluster_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="LocalCluster: any other keyword argument."
    )
    client_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments of distributed.Client."
    )
    connect_timeout: float = Field(
        5.0, gt=0, description="Seconds to reach the scheduler before the run fails."
    )
    ship_code: bool = Field(
        False,
        description="Pickle the job's own modules by value, so workers need no copy of them.",
    )
    max_concurrent: int | None = Field(
        None, ge=1, description="Steps in flight at once; default 32x the cluster's threads."
    )

    @model_validator(mode="after")
    def _address_or_local(self) -> DaskConfig:
        if self.address is None:
            return self
        given = sorted(
            name
            for name in LOCAL_CLUSTER_FIELDS
            if name in self.model_fields_set and getattr(self, name) not in (None, {})
        )
        if given:
            raise ValueError(
                f"{', '.join(given)} configure the LocalCluster plait starts when no address "
                f"is given, but address={self.address!r} names an existing scheduler; remove "
                "one or the other (size an existing cluster where its workers are started)"
            )
        return self

    def local_cluster_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``distributed.LocalCluster`` for a plait-started cluster."""
        kwargs: dict[str, Any] = {"dashboard_address": None}
        if self.processes is not False:  # threads-only clusters talk in-process (inproc://)
            kwargs["host"] = "127.0.0.1"
        for name in ("n_workers", "threads_per_worker", "processes", "memory_limit"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        kwargs.update(self.cluster_kwargs)
        return kwargs
