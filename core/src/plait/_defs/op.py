"""``@op``: a Python function becomes an ``OpDefinition``.

Parameters become inputs, except three kinds recognised by name or annotation: a
parameter named ``context`` (or annotated ``OpContext``) receives the ``OpContext``; one annotated with a ``Config``
subclass receives the op's validated config; one annotated with a
``ConfigurableResource`` subclass receives the resource whose key is the parameter name.
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any

from plait._defs.io import DEFAULT_OUTPUT, NO_DEFAULT, In, Out
from plait.errors import PlaitDefinitionError
from plait.retry import RetryPolicy

PRIORITY_TAG = "plait/priority"


def _is_context(annotation: Any) -> bool:
    module = sys.modules.get("plait.context")
    return module is not None and annotation is module.OpContext


def _config_kind(annotation: Any) -> str | None:
    """"config", "resource" or None. Looks at plait.config only if it was imported: an
    annotation cannot be a Config subclass otherwise, and `import plait` stays free of
    pydantic until config is used."""
    module = sys.modules.get("plait.config")
    if module is None or not isinstance(annotation, type):
        return None
    if issubclass(annotation, module.Config):
        return "config"
    if issubclass(annotation, module.ConfigurableResource):
        return "resource"
    return None


class OpDefinition:
    """A function plus its declared inputs, outputs, config, resources and policies.

    Call it inside a ``@graph`` to wire it; call it anywhere else with plain values to
    run the function directly (handy in unit tests).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        ins: Mapping[str, In] | None = None,
        out: Out | Mapping[str, Out] | None = None,
        required_resource_keys: set[str] | None = None,
        retry_policy: RetryPolicy | None = None,
        timeout: float | None = None,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.description = description or inspect.getdoc(fn)
        self.retry_policy = retry_policy
        self.timeout = timeout
        self.tags: dict[str, Any] = dict(tags or {})
        self.is_generator = inspect.isgeneratorfunction(fn)
        if timeout is not None and timeout <= 0:
            raise PlaitDefinitionError(f"op {self.name!r}: timeout must be > 0 seconds")
        _check_priority(self.name, self.tags)

        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception as exc:  # noqa: BLE001 - unresolvable annotation: say which op
            raise PlaitDefinitionError(
                f"op {self.name!r}: cannot resolve its type annotations ({exc}); import the "
                "names its annotations use at module level"
            ) from exc
        self.context_param: str | None = None
        self.config_param: tuple[str, type] | None = None
        self.resource_params: dict[str, type] = {}
        self.ins: dict[str, In] = {}
        declared = dict(ins or {})
        for param in inspect.signature(fn).parameters.values():
            self._classify(param, hints.get(param.name, Any), declared)
        if declared:
            raise PlaitDefinitionError(
                f"op {self.name!r}: ins= names {sorted(declared)} but the function has no such "
                f"parameter(s); its inputs are {sorted(self.ins)}"
            )
        self.required_resource_keys = frozenset(required_resource_keys or ()) | frozenset(
            self.resource_params
        )
        self.outs = _resolve_outs(self.name, out, hints.get("return", Any), self.is_generator)

    def _classify(self, param: inspect.Parameter, hint: Any, declared: dict[str, In]) -> None:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise PlaitDefinitionError(
                f"op {self.name!r}: *args/**kwargs parameters are not supported; name each input"
            )
        if param.name == "context" or _is_context(hint):
            self.context_param = param.name
        elif _config_kind(hint) == "config":
            if self.config_param:
                raise PlaitDefinitionError(
                    f"op {self.name!r}: two Config parameters ({self.config_param[0]!r} and "
                    f"{param.name!r}); an op has one config class"
                )
            self.config_param = (param.name, hint)
        elif _config_kind(hint) == "resource":
            self.resource_params[param.name] = hint
        else:
            spec = declared.pop(param.name, None) or In()
            if spec.type is Any and hint is not Any:
                spec = In(hint, spec.description, spec.default)
            if not spec.has_default and param.default is not inspect.Parameter.empty:
                spec = In(spec.type, spec.description, param.default)
            self.ins[param.name] = spec

    @property
    def input_names(self) -> list[str]:
        return list(self.ins)

    @property
    def priority(self) -> int:
        return int(self.tags.get(PRIORITY_TAG, 0))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from plait._defs.compose import invoke

        return invoke(self, self.name, args, kwargs)

    def alias(self, name: str) -> _AliasedOp:
        """Use this op again in one graph under another name (its step key)."""
        return _AliasedOp(self, name)

    def __repr__(self) -> str:
        return f"<op {self.name}>"


class _AliasedOp:
    """An op under another node name, callable inside a graph."""

    def __init__(self, op_def: OpDefinition, name: str) -> None:
        self.op_def = op_def
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from plait._defs.compose import invoke

        return invoke(self.op_def, self.name, args, kwargs)


def _check_priority(name: str, tags: Mapping[str, Any]) -> None:
    if PRIORITY_TAG in tags:
        try:
            int(tags[PRIORITY_TAG])
        except (TypeError, ValueError):
            raise PlaitDefinitionError(
                f"op {name!r}: tag {PRIORITY_TAG!r} must be an integer, got {tags[PRIORITY_TAG]!r}"
            ) from None


def _resolve_outs(
    op_name: str, out: Out | Mapping[str, Out] | None, return_hint: Any, is_generator: bool
) -> dict[str, Out]:
    if out is None:
        if is_generator:
            return_hint = Any  # Iterator[...] describes the generator, not the output
        return {DEFAULT_OUTPUT: Out(return_hint)}
    if isinstance(out, Out):
        if out.type is Any and return_hint is not Any and not is_generator and not out.is_dynamic:
            out = type(out)(return_hint, out.description, out.io_manager_key, out.is_required, out.metadata)
        return {DEFAULT_OUTPUT: out}
    if isinstance(out, Mapping):
        for key, value in out.items():
            if not isinstance(value, Out):
                raise PlaitDefinitionError(
                    f"op {op_name!r}: out[{key!r}] is {value!r}; each output must be an Out() "
                    "or DynamicOut()"
                )
        return dict(out)
    raise PlaitDefinitionError(
        f"op {op_name!r}: out= must be an Out, a DynamicOut or a dict of them, got {out!r}"
    )


def op(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    ins: Mapping[str, In] | None = None,
    out: Out | Mapping[str, Out] | None = None,
    required_resource_keys: set[str] | None = None,
    retry_policy: RetryPolicy | None = None,
    timeout: float | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> Any:
    """Turn a function into an op: ``@op`` or ``@op(out={...}, retry_policy=..., ...)``."""

    def wrap(func: Callable[..., Any]) -> OpDefinition:
        return OpDefinition(
            func,
            name=name,
            ins=ins,
            out=out,
            required_resource_keys=required_resource_keys,
            retry_policy=retry_policy,
            timeout=timeout,
            tags=tags,
            description=description,
        )

    return wrap(fn) if fn is not None else wrap


__all__ = ["NO_DEFAULT", "OpDefinition", "op"]
