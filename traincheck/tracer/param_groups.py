"""What each kind of parameter gets from an optimizer's param groups, recorded at every step.

The tracer records each group's ``lr`` and ``momentum`` by group index, which says
nothing about *which* parameters a group holds. Weight decay is the setting whose
meaning depends on that: the convention (nanoGPT, minGPT, timm, 🤗 Trainer) decays the
weight matrices and embeddings and leaves biases and normalisation gains alone, and
a swapped condition when the groups are built trains silently on.

So every ``Optimizer.step`` carries, per parameter kind, whether its parameters are
decayed: ``weight_decay[matrices]`` and ``weight_decay[vectors]`` with the value
``on`` (every parameter of the kind sits in a group with ``weight_decay > 0``),
``off`` (none does) or ``partly``. Kinds come from tensor rank (``matrices``:
``ndim >= 2``, as nanoGPT splits them; ``vectors``: the rest), so the description
does not change with the model's width or depth, nor with the order or number of
the groups; the value names no number, so it does not change with the configured
decay either. ConsistentInput then learns "``weight_decay[matrices]`` is always
``'on'``" from healthy runs like any string argument.

Only weight decay is described: whether ``lr`` or ``momentum`` is zero depends on
the schedule (a warm-up from 0), not on the parameter kind.

The description is computed once per optimizer and cached; each step costs one
signature of the groups (their parameter lists' lengths and decay settings: a
few microseconds per optimizer step, against a pass over every parameter), which
changes only when a group is added or its decay is rewritten.
"""

from __future__ import annotations

import weakref

import torch

from traincheck.events import ArgValue

KIND_MATRICES = "matrices"
KIND_VECTORS = "vectors"
ON, OFF, PARTLY = "on", "off", "partly"

_Signature = list[tuple[int, object]]
_CACHE: weakref.WeakKeyDictionary[
    torch.optim.Optimizer, tuple[_Signature, tuple[ArgValue, ...]]
] = weakref.WeakKeyDictionary()


def param_kind(param: object) -> str | None:
    """``matrices`` (rank 2 and up: linear and conv weights, embeddings) or ``vectors``
    (biases, normalisation gains, scalars); None for what is not a tensor."""
    if not isinstance(param, torch.Tensor):
        return None
    return KIND_MATRICES if param.dim() >= 2 else KIND_VECTORS


def decay_by_kind(optimizer: torch.optim.Optimizer) -> tuple[ArgValue, ...]:
    """``weight_decay[<kind>]`` for each kind of parameter the optimizer holds.

    Empty when a group's ``weight_decay`` is missing or not a plain number (a tensor
    would cost a device read): nothing is said rather than something half known.
    """
    groups = optimizer.param_groups
    signature = [(len(group["params"]), group.get("weight_decay")) for group in groups]
    cached = _CACHE.get(optimizer)
    if cached is not None and cached[0] == signature:
        return cached[1]
    args = _describe(groups)
    try:
        _CACHE[optimizer] = (signature, args)
    except TypeError:  # an optimizer that cannot be weakly referenced: no cache
        pass
    return args


def _describe(groups: list[dict[str, object]]) -> tuple[ArgValue, ...]:
    decayed: dict[str, set[bool]] = {}
    for group in groups:
        decay = group.get("weight_decay")
        if isinstance(decay, bool) or not isinstance(decay, (int, float)):
            return ()
        params = group["params"]
        for param in params if isinstance(params, list) else ():
            kind = param_kind(param)
            if kind is not None:
                decayed.setdefault(kind, set()).add(decay > 0)
    return tuple(
        ArgValue(f"weight_decay[{kind}]", "str", _state(decayed[kind])) for kind in sorted(decayed)
    )


def _state(seen: set[bool]) -> str:
    if len(seen) > 1:
        return PARTLY
    return ON if True in seen else OFF
