"""The invariant model: what one inferred invariant says, and a set of them.

The file that carries them (parse, validate, dump) is ``invariants_file``; the
relations build invariants with :func:`make_invariant` so that every id is a
hash of what the invariant says. An invariant's params are a tuple of the param
classes below; each relation declares which tuple it takes (a NamedTuple, see
``relations.param_shape``), so ``Invariant`` is generic in it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from traincheck.analysis.preconditions import (
    Precondition,
    Scalar,
)


@dataclass(frozen=True)
class APIParam:
    """An API, by the name the tracer gives it (e.g. ``torch.optim.Optimizer.step``)."""

    api_full_name: str

    def to_json(self) -> dict[str, Any]:
        return {"param_type": "APIParam", "api_full_name": self.api_full_name}


@dataclass(frozen=True)
class VarTypeParam:
    """An attribute of every variable of a type, optionally with a value transition.

    The attribute names and values are those of :mod:`traincheck.analysis.var_attrs`
    (``data`` changes ``anything -> changed``; ``grad`` goes between ``None``, ``zero``
    and ``non_zero``), as in the published tool.
    """

    var_type: str
    attr_name: str
    pre_value: str | None = None
    post_value: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "param_type": "VarTypeParam",
            "var_type": self.var_type,
            "attr_name": self.attr_name,
            "pre_value": self.pre_value,
            "post_value": self.post_value,
        }


@dataclass(frozen=True)
class VarNameParam:
    """One named variable (e.g. ``MLP.fc1.weight``) and one of its attributes.

    Names are stable between runs of one pipeline (``<RootClass>.<dotted path>``),
    which is what lets an invariant speak about a single parameter.
    """

    var_type: str
    var_name: str
    attr_name: str

    def to_json(self) -> dict[str, Any]:
        return {
            "param_type": "VarNameParam",
            "var_type": self.var_type,
            "var_name": self.var_name,
            "attr_name": self.attr_name,
        }


@dataclass(frozen=True)
class ValueParam:
    """A property of an API's input argument or of its result, with its expected value.

    ``role`` is ``input`` (``name`` is the argument name) or ``output`` (the
    result); ``prop`` is ``value`` for scalar arguments or a tensor property
    (``dtype``, ``device``, ``requires_grad``, ``kind``). ``state`` is the value a
    variable attribute keeps (ConstantState: ``name`` is the attribute).
    """

    role: str
    name: str
    prop: str
    value: Scalar

    def to_json(self) -> dict[str, Any]:
        return {
            "param_type": "ValueParam",
            "role": self.role,
            "name": self.name,
            "prop": self.prop,
            "value": self.value,
        }


VALUE_ROLES: tuple[str, ...] = ("input", "output", "state")
"""What a ValueParam is about: a call's argument, its result, or a variable's state."""

Param = APIParam | VarTypeParam | VarNameParam | ValueParam

PARAM_CLASSES: tuple[type[Param], ...] = (APIParam, VarTypeParam, VarNameParam, ValueParam)

Hints = tuple[tuple[str, int | float], ...]
"""Numbers a relation learned beside its params, as sorted (name, number) pairs."""

ParamsT = TypeVar("ParamsT", bound=Iterable[Param])
"""An invariant's params: its relation's NamedTuple of params (or, built by hand, a
plain tuple of them)."""


@dataclass(frozen=True)
class Invariant(Generic[ParamsT]):
    """One inferred invariant. ``group`` names the example group of the precondition."""

    relation: str
    params: ParamsT
    precondition: Precondition | None
    group: str
    text_description: str
    num_positive_examples: int
    num_negative_examples: int
    id: str = ""
    hints: Hints = ()
    """What a relation learned beside its params for checking, as (name, number)
    pairs, e.g. VarPeriodicChange's ``first_update_within`` (a count) or
    NumericRange's ``log_high`` (a float). Written only when set."""

    def to_json(self) -> dict[str, Any]:
        data = {
            "id": self.id,
            "relation": self.relation,
            "params": [p.to_json() for p in self.params],
            "precondition": _precondition_json(self.group, self.precondition),
            "text_description": self.text_description,
            "num_positive_examples": self.num_positive_examples,
            "num_negative_examples": self.num_negative_examples,
        }
        if self.hints:
            data["hints"] = dict(self.hints)
        return data

    def hint(self, name: str) -> int | None:
        """An integer hint (a count); None when absent or not an integer."""
        value = dict(self.hints).get(name)
        return value if isinstance(value, int) else None

    def number_hint(self, name: str) -> float | None:
        """A hint as a float (a learned bound); None when absent."""
        value = dict(self.hints).get(name)
        return None if value is None else float(value)


def _precondition_json(group: str, precondition: Precondition | None) -> Any:
    return "Unconditional" if precondition is None else {group: precondition.to_json()}


def invariant_id(
    relation: str,
    params: Iterable[Param],
    group: str,
    pre: Precondition | None,
    hints: Hints = (),
) -> str:
    """A stable id: a hash of what the invariant says, not of how often it was seen."""
    body: dict[str, Any] = {
        "relation": relation,
        "params": [p.to_json() for p in params],
        "precondition": _precondition_json(group, pre),
    }
    if hints:  # absent hints leave the ids of older files unchanged
        body["hints"] = dict(hints)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def make_invariant(
    relation: str,
    params: ParamsT,
    precondition: Precondition | None,
    *,
    group: str,
    text_description: str,
    num_positive_examples: int,
    num_negative_examples: int,
    hints: Hints = (),
) -> Invariant[ParamsT]:
    """Build an invariant with its id computed from its content."""
    return Invariant(
        relation=relation,
        params=params,
        precondition=precondition,
        group=group,
        text_description=text_description,
        num_positive_examples=num_positive_examples,
        num_negative_examples=num_negative_examples,
        id=invariant_id(relation, params, group, precondition, hints),
        hints=hints,
    )


@dataclass(frozen=True)
class InvariantSet:
    """The invariants of one file, in file order."""

    invariants: tuple[Invariant[Any], ...] = ()
    source: str | None = field(default=None, compare=False)

    def __iter__(self) -> Iterator[Invariant[Any]]:
        return iter(self.invariants)

    def __len__(self) -> int:
        return len(self.invariants)
