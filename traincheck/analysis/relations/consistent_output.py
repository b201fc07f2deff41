"""ConsistentOutputRelation: the result of an API always has one property value, in context.

``torch.nn.Module.__call__: result dtype is always 'torch.bfloat16'`` (in a
pipeline whose forward pass runs under autocast). Catches mixed precision that
is silently not applied: the forward pass returns float32. Properties are the
result tensor's ``dtype``, ``device`` and ``requires_grad`` (never its shape,
which follows the batch size). See :mod:`traincheck.analysis.relations.values`.
"""

from __future__ import annotations

from traincheck.analysis.relations.values import ValueRelation


class ConsistentOutputRelation(ValueRelation):
    name = "ConsistentOutputRelation"
    group = "pre_event"
    role = "output"
