"""ConsistentInputRelation (ours): an argument of an API always has one value, in context.

``torch.nn.Module.__call__: training is always True`` when ``stage == train``.
Catches a model left in eval mode after validation (BatchNorm and Dropout
silently switch behaviour while training goes on). The tracer records
``Module.training`` as an argument of every outermost module call for exactly
this reason. See :mod:`traincheck.analysis.relations.values` for the mechanics.
"""

from __future__ import annotations

from traincheck.analysis.relations.values import ValueRelation


class ConsistentInputRelation(ValueRelation):
    name = "ConsistentInputRelation"
    group = "pre_event"
    role = "input"
