"""``@graph``: compose ops (and other graphs) into a dependency graph."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from plait._defs.compose import (
    FromGraphInput,
    GraphInputHandle,
    NodeSpec,
    check_name,
    claim_name,
    compose,
    current_scope,
)
from plait.errors import PlaitDefinitionError

if TYPE_CHECKING:
    from plait._defs.job import JobDefinition
    from plait.executors.base import Executor
    from plait.retry import RetryPolicy


class GraphDefinition:
    """A graph of op invocations. Composed once at definition time, so wiring mistakes
    surface where the graph is defined; nested uses re-compose it under a key prefix."""

    def __init__(
        self, fn: Callable[..., Any], name: str | None = None, description: str | None = None
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        check_name("graph", self.name)
        self.description = description or inspect.getdoc(fn)
        params = inspect.signature(fn).parameters.values()
        for param in params:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise PlaitDefinitionError(
                    f"graph {self.name!r}: *args/**kwargs parameters are not supported"
                )
        self.input_names = [p.name for p in params]
        self.nodes: dict[str, NodeSpec] = {}
        compose(self.name, fn, tuple(GraphInputHandle(n) for n in self.input_names), {}, "", self.nodes)
        if not self.nodes:
            raise PlaitDefinitionError(
                f"graph {self.name!r} calls no op; call ops inside it to add steps"
            )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._invoke(self.name, args, kwargs)

    def alias(self, name: str) -> Callable[..., Any]:
        """Use this graph again in one parent graph under another name."""
        return lambda *args, **kwargs: self._invoke(name, args, kwargs)

    def _invoke(self, name: str, args: tuple, kwargs: dict) -> Any:
        scope = current_scope()
        if scope is None:
            raise PlaitDefinitionError(
                f"graph {self.name!r} was called outside a graph; to run it, make a job: "
                f"{self.name}.to_job().execute()"
            )
        if len(args) > len(self.input_names):
            raise PlaitDefinitionError(
                f"graph {self.name!r} takes {len(self.input_names)} input(s) "
                f"{self.input_names}, got {len(args)} positional argument(s)"
            )
        unknown = sorted(set(kwargs) - set(self.input_names))
        if unknown:
            raise PlaitDefinitionError(
                f"graph {self.name!r} has no input(s) {unknown}; its inputs are "
                f"{sorted(self.input_names)}"
            )
        key = claim_name(scope, name, "graph")
        return compose(self.name, self.fn, args, kwargs, key + ".", scope.nodes)

    def to_job(
        self,
        name: str | None = None,
        *,
        resources: Mapping[str, Any] | None = None,
        executor: str | Executor | None = None,
        tags: Mapping[str, str] | None = None,
        config: Mapping[str, Any] | None = None,
        retry_policy: RetryPolicy | None = None,
        description: str | None = None,
    ) -> JobDefinition:
        """Bind this graph to resources, a default executor, tags and default run config."""
        from plait._defs.job import JobDefinition

        return JobDefinition(
            self,
            name=name,
            resources=resources,
            executor=executor,
            tags=tags,
            config=config,
            retry_policy=retry_policy,
            description=description,
        )

    def unbound_inputs(self) -> list[str]:
        return sorted(
            {
                f"{key}.{input_name}"
                for key, node in self.nodes.items()
                for input_name, source in node.inputs.items()
                if isinstance(source, FromGraphInput)
            }
        )

    def __repr__(self) -> str:
        return f"<graph {self.name}>"


def graph(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None
) -> Any:
    """Compose ops into a graph: ``@graph`` or ``@graph(name=...)``."""

    def wrap(func: Callable[..., Any]) -> GraphDefinition:
        return GraphDefinition(func, name=name, description=description)

    return wrap(fn) if fn is not None else wrap
