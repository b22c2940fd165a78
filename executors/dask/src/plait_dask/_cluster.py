"""Reaching a cluster: connect a client to a scheduler, or start a LocalCluster, and
prepare the client for plait (the fence plugin, a short send interval)."""

from __future__ import annotations

import logging
import socket
import warnings
from typing import TYPE_CHECKING, Any

from plait.errors import ExecutorError

from plait_dask.config import DaskConfig

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)

CLIENT_SEND_INTERVAL = 0.002
"""Batching interval of the client's stream to the scheduler (Dask's default is 10 ms, the
scheduler's stream to clients uses 2 ms). The coordinator submits a chain's next step only
when the previous one ended, so a 10 ms interval would add up to 10 ms to every step."""


def connect(config: DaskConfig) -> tuple[Client, Any]:
    """A client on ``config.address``, or on a LocalCluster started here (returned too,
    for the caller to close)."""
    from distributed import Client

    kwargs = {"timeout": config.connect_timeout, "set_as_default": False, **config.client_kwargs}
    if config.address is not None:
        try:
            _probe(config.address, config.connect_timeout)
            return Client(config.address, **kwargs), None
        except (OSError, TimeoutError) as exc:
            raise ExecutorError(
                f"could not reach the Dask scheduler at {config.address!r} within "
                f"{config.connect_timeout:g}s ({type(exc).__name__}: {exc}). Start one "
                f"(`dask scheduler`, then `dask worker {config.address}` on each machine), "
                "fix execution.dask.address in run config, or leave address out to let "
                "plait start a LocalCluster"
            ) from exc
    cluster = _start_local_cluster(config)
    try:
        return Client(cluster, **kwargs), cluster
    except BaseException:
        cluster.close()
        raise


def _probe(address: str, timeout: float) -> None:
    """Fail fast, before a Client exists, when nothing listens at a TCP address: a Client
    that fails to connect leaves its event-loop thread running for good."""
    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, location = parse_address(address)
    if scheme not in ("tcp", "tls"):
        return
    host, port = parse_host_port(location)
    with socket.create_connection((host, port), timeout=timeout):
        pass


def prepare(client: Client) -> bool:
    """Tune the client for step-by-step submission and install plait's plugins; whether
    the fence plugin is in place."""
    comm = getattr(client, "scheduler_comm", None)
    if comm is not None and hasattr(comm, "interval"):
        comm.interval = CLIENT_SEND_INTERVAL
    fenced = _install_fence(client)
    _install_guards(client)
    return fenced


def _start_local_cluster(config: DaskConfig) -> Any:
    from distributed import LocalCluster

    kwargs = config.local_cluster_kwargs()
    try:
        with warnings.catch_warnings():
            # without a dashboard the scheduler's HTTP server takes a free port if 8787 is used
            warnings.filterwarnings("ignore", message="Port 8787 is already in use")
            return LocalCluster(**kwargs)
    except Exception as exc:
        raise ExecutorError(
            f"could not start a Dask LocalCluster with {kwargs}: {type(exc).__name__}: {exc}"
        ) from exc


def _install_guards(client: Client) -> None:
    """The worker and nanny plugins that stop a canceled step that does not return
    (``_stuck``) and kill what a dead worker's steps started (``_reaper``). Shipped by
    value, like the fence: a worker runs the plugin code of the plait that registered it."""
    import cloudpickle

    from plait_dask import _reaper, _stuck

    for module in (_stuck, _reaper):
        cloudpickle.register_pickle_by_value(module)
    guards = (
        (_stuck.StuckStepGuard(), "a step that plait canceled (op timeout, canceled run) "
         "keeps its worker thread until it returns, forever if it hangs"),
        (_reaper.WorkerReaper(), "processes a step started outlive a worker that dies"),
    )
    for plugin, otherwise in guards:
        try:
            client.register_plugin(plugin)
        except Exception as exc:  # noqa: BLE001 - e.g. a cluster that refuses pickled plugins
            logger.warning("could not install plait's %s plugin on the Dask cluster (%s: %s): %s",
                           plugin.name, type(exc).__name__, exc, otherwise)


def _install_fence(client: Client) -> bool:
    import cloudpickle

    from plait_dask import _fence

    cloudpickle.register_pickle_by_value(_fence)
    try:
        client.register_plugin(_fence.PlaitFence(), name=_fence.PLUGIN_NAME)
    except Exception as exc:  # noqa: BLE001 - e.g. a scheduler that refuses pickled plugins
        logger.warning(
            "could not install plait's scheduler plugin (%s: %s): if a worker dies mid-step, "
            "Dask may start the step again on another worker before plait reports it lost",
            type(exc).__name__, exc,
        )
        return False
    return True
