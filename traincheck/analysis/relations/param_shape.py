"""The params a relation takes, declared once as a NamedTuple, and the one parser for them.

Each relation names the shape of its params as a NamedTuple of param classes::

    class ContainParams(NamedTuple):
        api: APIParam
        event: APIParam | VarTypeParam

:func:`parse_params` checks an invariants file's params against that declaration
(how many, of which class, which variable attributes), the same way for every
relation, and returns the NamedTuple. Relation code then reads ``params.event``
with the type the declaration gives it and validates nothing by hand; what a
relation requires beyond types (a value it can check) is its ``params_problem``.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from functools import cache
from typing import TypeVar, Union, cast, get_args, get_origin, get_type_hints

from traincheck.analysis.invariants import PARAM_CLASSES, Param, VarNameParam, VarTypeParam

ShapeT = TypeVar("ShapeT", bound=tuple[Param, ...])
"""A relation's params: a NamedTuple of param classes."""


@cache
def param_classes(shape: type[tuple[Param, ...]]) -> tuple[tuple[type[Param], ...], ...]:
    """Per field of ``shape``, in order, the param classes it accepts (from its annotations).

    Raises TypeError for a field that is not a param class or a union of them: a
    mistake in a relation's declaration, found when the relation is defined."""
    fields = []
    for name, annotation in get_type_hints(shape).items():
        union = get_origin(annotation) in (Union, types.UnionType)
        classes = get_args(annotation) if union else (annotation,)
        if not classes or not all(c in PARAM_CLASSES for c in classes):
            raise TypeError(f"{shape.__name__}.{name}: {annotation!r} is not a param class")
        fields.append(classes)
    return tuple(fields)


def shape_text(shape: type[tuple[Param, ...]]) -> str:
    """The declaration in words, e.g. ``[APIParam, APIParam | VarTypeParam]``."""
    fields = (" | ".join(c.__name__ for c in classes) for classes in param_classes(shape))
    return f"[{', '.join(fields)}]"


def parse_params(
    relation: str,
    shape: type[ShapeT],
    params: Sequence[Param],
    var_attrs: tuple[str, ...] | None = None,
) -> ShapeT:
    """``params`` as ``shape``; raise ValueError (one line, naming ``relation``) when they
    do not fit it, or when a variable param names an attribute outside ``var_attrs``
    (None: any attribute)."""
    fields = param_classes(shape)
    if len(params) != len(fields) or not all(
        isinstance(param, classes) for param, classes in zip(params, fields, strict=False)
    ):
        raise ValueError(f"{relation} needs params {shape_text(shape)}")
    for param in params:
        if (
            isinstance(param, (VarTypeParam, VarNameParam))
            and var_attrs is not None
            and param.attr_name not in var_attrs
        ):
            expected = " or ".join(repr(attr) for attr in var_attrs)
            raise ValueError(
                f"{relation}: attribute {param.attr_name!r} is not tracked (expected {expected})"
            )
    make = cast(Callable[..., ShapeT], shape)  # a NamedTuple takes its fields positionally
    return make(*params)
