"""``@job`` / ``graph.to_job``: a graph bound to resources, a default executor, tags and
default run config; ``job.execute(...)`` runs it."""

from __future__ import annotations

import graphlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from plait._defs.compose import NodeSpec
from plait._defs.graph import GraphDefinition
from plait.errors import PlaitDefinitionError

if TYPE_CHECKING:
    import threading

    from plait.events import Event
    from plait.executors.base import Executor
    from plait.instance import Instance
    from plait.result import RunResult
    from plait.retry import RetryPolicy


class JobDefinition:
    """An executable graph. ``nodes`` maps step keys (``op``, ``graph.op``) to nodes, in
    plan order."""

    def __init__(
        self,
        graph: GraphDefinition,
        *,
        name: str | None = None,
        resources: Mapping[str, Any] | None = None,
        executor: str | Executor | None = None,
        tags: Mapping[str, str] | None = None,
        config: Mapping[str, Any] | None = None,
        retry_policy: RetryPolicy | None = None,
        description: str | None = None,
    ) -> None:
        self.graph = graph
        self.name = name or graph.name
        self.resources: dict[str, Any] = dict(resources or {})
        self.executor = executor
        self.tags: dict[str, str] = dict(tags or {})
        self.default_run_config: dict[str, Any] = dict(config or {})
        self.retry_policy = retry_policy
        self.description = description or graph.description
        self.code_pointer: str | None = None
        unbound = graph.unbound_inputs()
        if unbound:
            raise PlaitDefinitionError(
                f"job {self.name!r}: graph {graph.name!r} has inputs that nothing feeds "
                f"({', '.join(unbound)}); a job's graph takes no parameters — nest it in "
                "another graph that passes op outputs to it"
            )
        self.nodes: dict[str, NodeSpec] = graph.nodes
        _check_acyclic(self.name, self.nodes)

    def execute(
        self,
        run_config: Mapping[str, Any] | str | None = None,
        *,
        executor: str | Executor | None = None,
        instance: Instance | None = None,
        op_selection: list[str] | None = None,
        tags: Mapping[str, str] | None = None,
        raise_on_error: bool = True,
        resources: Mapping[str, Any] | None = None,
        cancel: threading.Event | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> RunResult:
        """Run the job and wait for it to end.

        ``executor`` (a name or an ``Executor``) wins over ``execution:`` in run config,
        which wins over the job's default, then ``in_process``. ``resources`` replaces the
        job's resources by key (e.g. fakes in tests). Setting ``cancel`` cancels the run.
        """
        from plait._run.execute import execute_job

        return execute_job(
            self,
            run_config=run_config,
            executor=executor,
            instance=instance,
            op_selection=op_selection,
            tags=tags,
            raise_on_error=raise_on_error,
            resources=resources,
            cancel=cancel,
            on_event=on_event,
        )

    def __repr__(self) -> str:
        return f"<job {self.name}>"


def _check_acyclic(job_name: str, nodes: Mapping[str, NodeSpec]) -> None:
    sorter = graphlib.TopologicalSorter({key: node.upstream_keys() for key, node in nodes.items()})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise PlaitDefinitionError(
            f"job {job_name!r} has a dependency cycle: {cycle}; an op cannot depend on its own output"
        ) from None


def job(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    resources: Mapping[str, Any] | None = None,
    executor: str | Executor | None = None,
    tags: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
    retry_policy: RetryPolicy | None = None,
    description: str | None = None,
) -> Any:
    """Compose ops into a job: ``@job`` or ``@job(resources=..., executor=...)``."""

    def wrap(func: Callable[..., Any]) -> JobDefinition:
        return GraphDefinition(func, name=name).to_job(
            name,
            resources=resources,
            executor=executor,
            tags=tags,
            config=config,
            retry_policy=retry_policy,
            description=description,
        )

    return wrap(fn) if fn is not None else wrap
