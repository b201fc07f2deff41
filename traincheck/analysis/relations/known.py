"""The relations TrainCheck knows, by the name used in invariants files and CLI options."""

from __future__ import annotations

from typing import Any

from traincheck.analysis.relations.api_contain import APIContainRelation
from traincheck.analysis.relations.base import Relation
from traincheck.analysis.relations.change_within import ChangeWithinRelation
from traincheck.analysis.relations.consistency import ConsistencyRelation
from traincheck.analysis.relations.consistent_input import ConsistentInputRelation
from traincheck.analysis.relations.consistent_input_output import ConsistentInputOutputRelation
from traincheck.analysis.relations.consistent_output import ConsistentOutputRelation
from traincheck.analysis.relations.constant_state import ConstantStateRelation
from traincheck.analysis.relations.cover import FunctionCoverRelation
from traincheck.analysis.relations.data_order import DataOrderRelation
from traincheck.analysis.relations.distinct_argument import DistinctArgumentRelation
from traincheck.analysis.relations.equal_variables import EqualVariablesRelation
from traincheck.analysis.relations.lead import FunctionLeadRelation
from traincheck.analysis.relations.numeric_range import NumericRangeRelation
from traincheck.analysis.relations.shared_parameter import SharedParameterRelation
from traincheck.analysis.relations.single_update import SingleUpdateRelation
from traincheck.analysis.relations.state_at_call import StateAtCallRelation
from traincheck.analysis.relations.var_periodic_change import VarPeriodicChangeRelation

AnyRelation = Relation[Any, Any]

_RELATIONS: dict[str, AnyRelation] = {
    r.name: r
    for r in (
        APIContainRelation(),
        ChangeWithinRelation(),
        ConsistencyRelation(),
        ConstantStateRelation(),
        ConsistentInputRelation(),
        ConsistentInputOutputRelation(),
        ConsistentOutputRelation(),
        DataOrderRelation(),
        DistinctArgumentRelation(),
        EqualVariablesRelation(),
        FunctionCoverRelation(),
        FunctionLeadRelation(),
        NumericRangeRelation(),
        SharedParameterRelation(),
        SingleUpdateRelation(),
        StateAtCallRelation(),
        VarPeriodicChangeRelation(),
    )
}


def relation_names() -> list[str]:
    return sorted(_RELATIONS)


def get_relation(name: str) -> AnyRelation | None:
    return _RELATIONS.get(name)


def select_relations(
    enable: list[str] | None = None, disable: list[str] | None = None
) -> list[AnyRelation]:
    """Relations to run: ``enable`` (if given) wins over ``disable``.

    Raises ValueError naming unknown relation names.
    """
    unknown = sorted({*(enable or ()), *(disable or ())} - set(_RELATIONS))
    if unknown:
        raise ValueError(
            f"unknown relation {', '.join(unknown)} (known: {', '.join(relation_names())})"
        )
    if enable:
        return [_RELATIONS[n] for n in relation_names() if n in enable]
    return [_RELATIONS[n] for n in relation_names() if n not in (disable or ())]
