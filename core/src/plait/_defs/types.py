"""Gradual runtime types: annotations checked right before and after each op runs.

``check_type(value, annotation)`` returns None when the value fits, else a sentence saying
what was expected and what was found. Understood: ``Any``, ``None``, classes, ``Optional``
and unions, ``list[T]``, ``set[T]``, ``tuple[...]``, ``dict[K, V]``, ``Literal``, and
``PlaitType`` for custom checks. Anything else (``Callable``, type variables, protocols)
is accepted unchecked rather than guessed at.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_MISSING_ITEMS_SHOWN = 3


@dataclass(frozen=True)
class TypeCheck:
    """The result a ``PlaitType`` check function may return instead of a bool."""

    success: bool
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


class PlaitType:
    """A named runtime type with its own check, e.g. a DataFrame with required columns.

    ``type_check_fn(value)`` returns True/False or a ``TypeCheck`` with a description of
    every violation.
    """

    def __init__(
        self,
        name: str,
        type_check_fn: Callable[[Any], bool | TypeCheck],
        description: str | None = None,
    ) -> None:
        self.name = name
        self.type_check_fn = type_check_fn
        self.description = description

    def check(self, value: Any) -> TypeCheck:
        result = self.type_check_fn(value)
        if isinstance(result, TypeCheck):
            return result
        if not isinstance(result, bool):
            raise TypeError(
                f"type check of PlaitType {self.name!r} returned {type(result).__name__}; "
                "it must return a bool or a plait.TypeCheck"
            )
        return TypeCheck(result)

    def __repr__(self) -> str:
        return f"PlaitType({self.name!r})"


def type_name(annotation: Any) -> str:
    """A readable name for an annotation: ``int``, ``list[str]``, ``Optional[int]``."""
    if annotation is Any:
        return "Any"
    if annotation is None or annotation is type(None):
        return "None"
    if isinstance(annotation, PlaitType):
        return annotation.name
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__qualname__} {text}"


def check_type(value: Any, annotation: Any) -> str | None:
    """None if ``value`` fits ``annotation``; otherwise why it does not."""
    if annotation is Any or annotation is typing.Any:
        return None
    if isinstance(annotation, PlaitType):
        result = annotation.check(value)
        if result.success:
            return None
        return f"expected {annotation.name}, {result.description or 'the type check failed'}"
    if annotation is None or annotation is type(None):
        return None if value is None else f"expected None, got {_describe(value)}"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if any(check_type(value, arg) is None for arg in args):
            return None
        return f"expected {type_name(annotation)}, got {_describe(value)}"
    if origin is typing.Literal:
        return None if value in args else f"expected one of {args!r}, got {_describe(value)}"
    if origin is typing.Annotated:
        return check_type(value, args[0])
    if origin is None:
        if isinstance(annotation, type):
            if isinstance(value, annotation):
                return None
            # an int is an acceptable float, as in static typing
            if annotation is float and isinstance(value, int) and not isinstance(value, bool):
                return None
            return f"expected {type_name(annotation)}, got {_describe(value)}"
        return None  # TypeVar, ForwardRef, NewType...: not checked
    return _check_generic(value, annotation, origin, args)


def _check_generic(value: Any, annotation: Any, origin: Any, args: tuple[Any, ...]) -> str | None:
    if not isinstance(origin, type) or origin is collections.abc.Callable:
        return None
    if not isinstance(value, origin):
        return f"expected {type_name(annotation)}, got {_describe(value)}"
    if not args:
        return None
    if isinstance(value, collections.abc.Iterator):
        return None  # checking its items would consume them: the op would get an empty iterator
    if issubclass(origin, collections.abc.Mapping) and len(args) == 2:
        for key, item in value.items():
            problem = check_type(key, args[0]) or check_type(item, args[1])
            if problem:
                return f"expected {type_name(annotation)}, at key {key!r}: {problem}"
        return None
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            items = [(i, item, args[0]) for i, item in enumerate(value)]
        elif len(args) != len(value):
            return f"expected {type_name(annotation)}, got a tuple of {len(value)} items"
        else:
            items = [(i, item, arg) for i, (item, arg) in enumerate(zip(value, args, strict=True))]
        for i, item, arg in items:
            problem = check_type(item, arg)
            if problem:
                return f"expected {type_name(annotation)}, at index {i}: {problem}"
        return None
    if issubclass(origin, collections.abc.Iterable) and len(args) == 1:
        for i, item in enumerate(value):
            problem = check_type(item, args[0])
            if problem:
                return f"expected {type_name(annotation)}, at index {i}: {problem}"
        return None
    return None
