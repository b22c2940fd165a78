"""Graph composition: calling ops inside a ``@graph`` function records nodes, not results.

While a graph function runs, a composition scope is active. Calling an op in it adds a
``NodeSpec`` (its key, op, where each input comes from, and the dynamic output it is
mapped over, if any) and returns handles to the op's outputs, which are passed on to
other ops. Nested graphs run their function in a child scope whose keys are prefixed
with the graph's name, so the whole job flattens into one ordered dict of nodes, and
that order (creation order) is always a valid topological order.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from plait.errors import PlaitDefinitionError

if TYPE_CHECKING:
    from plait._defs.op import OpDefinition

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class DynamicSource:
    """A dynamic output that mapped nodes fan out over."""

    node_key: str
    output_name: str


@dataclass(frozen=True)
class FromOutput:
    """An input fed by one upstream output (per mapping key when the upstream is mapped
    or dynamic)."""

    node_key: str
    output_name: str


@dataclass(frozen=True)
class FanIn:
    """An input fed by a list of upstream outputs: the op receives a list."""

    items: tuple[FromOutput, ...]


@dataclass(frozen=True)
class Collect:
    """An input fed by every item of a dynamic fan-out (a list, in mapping-key order)."""

    node_key: str
    output_name: str
    source: DynamicSource


@dataclass(frozen=True)
class FromGraphInput:
    """A graph parameter not yet bound (only in a graph composed on its own)."""

    name: str


InputSource = FromOutput | FanIn | Collect | FromGraphInput


@dataclass(frozen=True)
class NodeSpec:
    """One op invocation in a flattened job graph."""

    key: str
    op: OpDefinition
    inputs: dict[str, InputSource]
    mapped_over: DynamicSource | None = None
    order: int = 0

    def upstream_keys(self) -> list[str]:
        keys: list[str] = []
        for source in self.inputs.values():
            if isinstance(source, FromOutput | Collect):
                keys.append(source.node_key)
            elif isinstance(source, FanIn):
                keys.extend(item.node_key for item in source.items)
        return keys


@dataclass
class _Scope:
    prefix: str
    nodes: dict[str, NodeSpec]
    graph_name: str
    local_names: set[str] = field(default_factory=set)


_current: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("plait_scope", default=None)


class OutputHandle:
    """An op output inside a graph function. Pass it to other ops; on a dynamic output
    (or an output of a mapped op) use ``.map(fn)`` and ``.collect()``."""

    def __init__(
        self,
        node_key: str,
        output_name: str,
        *,
        dynamic: bool = False,
        mapped_over: DynamicSource | None = None,
    ) -> None:
        self.node_key = node_key
        self.output_name = output_name
        self.dynamic = dynamic
        self.mapped_over = mapped_over

    def map(self, fn: Callable[[OutputHandle], Any]) -> Any:
        """Run ``fn`` (an op, or a function calling ops) once per item of this fan-out."""
        if self.dynamic:
            item = OutputHandle(
                self.node_key,
                self.output_name,
                mapped_over=DynamicSource(self.node_key, self.output_name),
            )
            return fn(item)
        if self.mapped_over is not None:
            return fn(self)
        raise PlaitDefinitionError(
            f"output {self.output_name!r} of {self.node_key!r} is not dynamic: .map() needs a "
            "DynamicOut (or the output of an op that is itself mapped)"
        )

    def collect(self) -> CollectHandle:
        """All items of this fan-out as one list input (in mapping-key order)."""
        if self.dynamic:
            source = DynamicSource(self.node_key, self.output_name)
        elif self.mapped_over is not None:
            source = self.mapped_over
        else:
            raise PlaitDefinitionError(
                f"output {self.output_name!r} of {self.node_key!r} is not dynamic: .collect() "
                "needs a DynamicOut or the output of a mapped op"
            )
        return CollectHandle(self.node_key, self.output_name, source)

    def __repr__(self) -> str:
        return f"<output {self.node_key}.{self.output_name}>"


@dataclass(frozen=True)
class CollectHandle:
    """The collected items of a fan-out, to pass to one op input as a list."""

    node_key: str
    output_name: str
    source: DynamicSource


class GraphInputHandle:
    """A graph parameter while the graph is composed on its own.

    Nested, the parameter may be a dynamic output that the graph maps and collects; on its
    own, ``.map`` marks what is mapped over the parameter (so ``.collect()`` works as it
    will when nested) and the graph only records which op inputs the parameter feeds.
    """

    def __init__(self, name: str, mapped_over: DynamicSource | None = None) -> None:
        self.name = name
        self.mapped_over = mapped_over

    def map(self, fn: Callable[[GraphInputHandle], Any]) -> Any:
        return fn(GraphInputHandle(self.name, DynamicSource("<graph input>", self.name)))

    def collect(self) -> GraphInputHandle:
        return GraphInputHandle(self.name)


class MultipleOutputs(tuple):
    """The outputs of a multi-output op: unpack it, index it, or use ``.name``."""

    _names: tuple[str, ...]

    def __new__(cls, names: list[str], handles: list[OutputHandle]) -> MultipleOutputs:
        obj = super().__new__(cls, handles)
        obj._names = tuple(names)
        return obj

    def __getattr__(self, name: str) -> OutputHandle:
        try:
            return self[self._names.index(name)]
        except ValueError:
            raise AttributeError(
                f"no output {name!r}; outputs are {sorted(self._names)}"
            ) from None


def current_scope() -> _Scope | None:
    return _current.get()


def compose(graph_name: str, fn: Callable[..., Any], args: tuple, kwargs: dict, prefix: str,
            nodes: dict[str, NodeSpec]) -> Any:
    """Run a graph function in a new scope; returns what the function returned."""
    token = _current.set(_Scope(prefix, nodes, graph_name))
    try:
        return fn(*args, **kwargs)
    finally:
        _current.reset(token)


def check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise PlaitDefinitionError(
            f"{kind} name {name!r} is invalid: start with a letter or underscore and use "
            "letters, digits, '_' and '-' only (names become step keys and storage paths)"
        )


def claim_name(scope: _Scope, name: str, what: str) -> str:
    check_name(what, name)
    if name in scope.local_names:
        raise PlaitDefinitionError(
            f"graph {scope.graph_name!r} uses the name {name!r} twice; give the second use "
            f"its own name with .alias(\"{name}_2\")"
        )
    scope.local_names.add(name)
    return scope.prefix + name


def invoke(op_def: OpDefinition, name: str, args: tuple, kwargs: dict) -> Any:
    """Call an op: record a node inside a graph, or run the function outside one."""
    scope = _current.get()
    if scope is None:
        if _contains_handle(args) or _contains_handle(kwargs.values()):
            raise PlaitDefinitionError(
                f"op {name!r} was called with the output of another op outside a graph; "
                "wire ops together inside a function decorated with @graph or @job"
            )
        return op_def.fn(*args, **kwargs)

    bound = _bind_inputs(op_def, name, args, kwargs)
    key = claim_name(scope, name, "op")
    inputs: dict[str, InputSource] = {}
    mapped: set[DynamicSource] = set()
    for input_name, value in bound.items():
        source, mapped_over = _input_source(name, input_name, value)
        inputs[input_name] = source
        if mapped_over is not None:
            mapped.add(mapped_over)
    if len(mapped) > 1:
        raise PlaitDefinitionError(
            f"op {name!r} has inputs mapped over different dynamic outputs "
            f"({', '.join(sorted(f'{m.node_key}.{m.output_name}' for m in mapped))}); "
            "collect() one of them first"
        )
    mapped_over = next(iter(mapped), None)
    if mapped_over is not None and any(out.is_dynamic for out in op_def.outs.values()):
        raise PlaitDefinitionError(
            f"op {name!r} has a DynamicOut and is itself mapped over "
            f"{mapped_over.node_key!r}: nested fan-out is not supported; collect() first"
        )
    scope.nodes[key] = NodeSpec(key, op_def, inputs, mapped_over, order=len(scope.nodes))
    handles = [
        OutputHandle(key, out_name, dynamic=out.is_dynamic, mapped_over=mapped_over)
        for out_name, out in op_def.outs.items()
    ]
    if not handles:
        return None
    if len(handles) == 1:
        return handles[0]
    return MultipleOutputs(list(op_def.outs), handles)


def _contains_handle(values: Any) -> bool:
    for value in values:
        if isinstance(value, OutputHandle | CollectHandle | GraphInputHandle):
            return True
        if isinstance(value, list | tuple) and _contains_handle(value):
            return True
    return False


def _bind_inputs(op_def: OpDefinition, name: str, args: tuple, kwargs: dict) -> dict[str, Any]:
    input_names = op_def.input_names
    if len(args) > len(input_names):
        raise PlaitDefinitionError(
            f"op {name!r} takes {len(input_names)} input(s) {input_names}, but was called "
            f"with {len(args)} positional argument(s)"
        )
    bound = dict(zip(input_names, args, strict=False))
    for key, value in kwargs.items():
        if key not in op_def.ins:
            raise PlaitDefinitionError(
                f"op {name!r} has no input {key!r}; its inputs are {sorted(input_names)}"
            )
        if key in bound:
            raise PlaitDefinitionError(f"op {name!r} got input {key!r} twice")
        bound[key] = value
    missing = [n for n in input_names if n not in bound and not op_def.ins[n].has_default]
    if missing:
        raise PlaitDefinitionError(
            f"op {name!r} is missing required input(s) {sorted(missing)}: pass an upstream "
            "output for each, or give the input a default (In(default=...) or a parameter "
            "default)"
        )
    return bound


def _input_source(op_name: str, input_name: str, value: Any) -> tuple[InputSource, DynamicSource | None]:
    where = f"input {input_name!r} of op {op_name!r}"
    if isinstance(value, OutputHandle):
        if value.dynamic:
            raise PlaitDefinitionError(
                f"{where} receives the dynamic output {value.node_key}.{value.output_name} "
                "directly; fan out with .map(op) or gather with .collect()"
            )
        return FromOutput(value.node_key, value.output_name), value.mapped_over
    if isinstance(value, CollectHandle):
        return Collect(value.node_key, value.output_name, value.source), None
    if isinstance(value, GraphInputHandle):
        return FromGraphInput(value.name), value.mapped_over
    if (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(v, OutputHandle | GraphInputHandle) for v in value)
        and any(isinstance(v, GraphInputHandle) for v in value)
    ):
        # a graph composed on its own fans in one of its parameters: the input is unbound
        # here (a job cannot take it), and real outputs replace it when the graph is nested
        first = next(v for v in value if isinstance(v, GraphInputHandle))
        return FromGraphInput(first.name), None
    if isinstance(value, list | tuple) and value and all(isinstance(v, OutputHandle) for v in value):
        items = []
        for item in value:
            if item.dynamic or item.mapped_over is not None:
                raise PlaitDefinitionError(
                    f"{where}: a fan-in list cannot hold a dynamic or mapped output "
                    f"({item.node_key}.{item.output_name}); use .collect() for those"
                )
            items.append(FromOutput(item.node_key, item.output_name))
        return FanIn(tuple(items)), None
    raise PlaitDefinitionError(
        f"{where} was given the plain value {value!r}; inside a graph, inputs come from other "
        "ops' outputs. Use a parameter default or In(default=...) for constants, or op config"
    )
