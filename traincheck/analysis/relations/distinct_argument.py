"""DistinctArgumentRelation: an API never sees the same input content twice where it should not.

Two scopes, both over the content digest the tracer attaches to a tensor argument
(``input`` of an outermost ``torch.nn.Module.__call__``, the batch):

- ``ranks``: ``the n-th torch.nn.Module.__call__ of every rank gets a different
  input``. Catches data-parallel training without a ``DistributedSampler``: every
  rank trains on the same batches, so N GPUs do the work of one and nothing fails.
- ``consecutive calls``: ``each torch.nn.Module.__call__ gets a different input
  than the previous one`` (per process and thread). Catches a loop that feeds the
  same batch every step (``next(iter(loader))`` hoisted out of the loop).

Calls are paired across ranks by their per-process ordinal, as in
ConsistencyRelation: data-parallel ranks run the same loop. Calls more than
:data:`PAIRING_WINDOW` ordinals apart are not kept (memory stays bounded). A
single-process run has no cross-rank example, so it neither yields nor checks a
``ranks`` invariant. Only equality of digests is used: a digest is never a
precondition property and never appears in an invariant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from traincheck.analysis.calls import CallStart, Signal
from traincheck.analysis.invariants import APIParam, ValueParam
from traincheck.analysis.preconditions import Props, feature_key, pair_props
from traincheck.analysis.relations.base import (
    DEFAULT_SETTINGS,
    Collector,
    InferOutcome,
    InferSettings,
    InvariantResult,
    KeyedExamples,
    Relation,
    RelationChecker,
    decide,
)
from traincheck.analysis.relations.call_violation import call_violation
from traincheck.analysis.relations.digest_slots import DistinctDigestChecker
from traincheck.analysis.relations.ordering import is_ordering_candidate
from traincheck.analysis.violations import Violation

ACROSS_RANKS, ACROSS_CALLS = "ranks", "consecutive calls"
SCOPES = (ACROSS_RANKS, ACROSS_CALLS)
DIGEST_PROP = "digest"
PAIRING_WINDOW = 64
"""Per-process call ordinals kept for cross-rank pairing."""


Hypothesis = tuple[str, str, str]
"""(api, argument, scope)."""


class DistinctParams(NamedTuple):
    """Calls of ``api`` get different content in the argument ``input.name``, compared
    within the scope ``input.value`` names (``input.prop`` is always :data:`DIGEST_PROP`)."""

    api: APIParam
    input: ValueParam


def digested_args(start: CallStart) -> Iterator[tuple[str, int]]:
    """(argument name, content digest) of the call's tensor arguments that carry one."""
    for arg in start.event.args:
        if arg.kind == "tensor" and isinstance(arg.value, int) and not isinstance(arg.value, bool):
            yield arg.name, arg.value


@dataclass(frozen=True)
class Comparison:
    """One example: a call's input compared with another call's (same slot).

    ``props`` are the two-record example's properties (:func:`pair_props`), so a
    precondition may say ``consistent stage`` (both calls in the same stage)."""

    api: str
    name: str
    scope: str
    distinct: bool
    props: Props
    other_rank: int | None = None


@dataclass
class InputPairing:
    """Remembers recent input digests per slot; shared by inference and checking."""

    _previous: dict[tuple[int, int, str, str], tuple[int, Props]] = field(default_factory=dict)
    _ordinal: dict[tuple[int, str, str], int] = field(default_factory=dict)
    _by_ordinal: dict[tuple[str, str], dict[int, dict[int, tuple[int, Props]]]] = field(
        default_factory=lambda: defaultdict(dict)
    )

    def compare(self, start: CallStart) -> list[Comparison]:
        found: list[Comparison] = []
        for name, digest in digested_args(start):
            slot = (start.api, name)
            previous_key = (start.pid, start.thread, *slot)
            previous = self._previous.get(previous_key)
            if previous is not None:
                props = pair_props(start.props, previous[1])
                found.append(Comparison(*slot, ACROSS_CALLS, previous[0] != digest, props))
            self._previous[previous_key] = (digest, start.props)
            ordinal_key = (start.pid, *slot)
            ordinal = self._ordinal.get(ordinal_key, 0)
            self._ordinal[ordinal_key] = ordinal + 1
            table = self._by_ordinal[slot]
            ranks = table.setdefault(ordinal, {})
            for rank, (other, other_props) in sorted(ranks.items()):
                if rank != start.rank:
                    props = pair_props(start.props, other_props)
                    found.append(Comparison(*slot, ACROSS_RANKS, other != digest, props, rank))
            ranks.setdefault(start.rank, (digest, start.props))
            for stale in [o for o in table if o < ordinal - PAIRING_WINDOW]:
                del table[stale]
        return found


class _DistinctCollector(Collector):
    def __init__(self) -> None:
        self.examples = KeyedExamples[Hypothesis]()
        """(api, argument, scope) -> calls whose input differed from the one compared."""
        self._pairing = InputPairing()

    def begin_trace(self) -> None:
        self._pairing = InputPairing()

    def on_signal(self, signal: Signal) -> None:
        if not isinstance(signal, CallStart) or not is_ordering_candidate(signal.api):
            return
        for c in self._pairing.compare(signal):
            self.examples.add((c.api, c.name, c.scope), feature_key(c.props), c.distinct)


class DistinctArgumentRelation(Relation[DistinctParams, _DistinctCollector]):
    name = "DistinctArgumentRelation"
    group = "pre_event"
    params_type = DistinctParams

    def new_collector(self) -> _DistinctCollector:
        return _DistinctCollector()

    def infer(
        self, collector: _DistinctCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        for (api, name, scope), examples in collector.examples.in_order():
            params = DistinctParams(APIParam(api), ValueParam("input", name, DIGEST_PROP, scope))
            decide(self, params, examples, outcome)
        return outcome

    def new_checker(self, results: Sequence[InvariantResult[DistinctParams]]) -> RelationChecker:
        return _DistinctChecker(results)

    def params_problem(self, params: DistinctParams) -> str | None:
        if params.input.prop != DIGEST_PROP or params.input.value not in SCOPES:
            scopes = " or ".join(repr(scope) for scope in SCOPES)
            return f"the ValueParam must have prop {DIGEST_PROP!r} and value {scopes}"
        return None

    def describe(self, params: DistinctParams) -> str:
        api, value = params
        if value.value == ACROSS_RANKS:
            return f"the n-th {api.api_full_name} of every rank gets a different {value.name}"
        return f"each {api.api_full_name} gets a different {value.name} than the previous one"


class _DistinctChecker(DistinctDigestChecker[DistinctParams, Comparison]):
    def __init__(self, results: Sequence[InvariantResult[DistinctParams]]) -> None:
        super().__init__(results)
        self._pairing = InputPairing()

    def comparisons(self, signal: Signal) -> list[Comparison]:
        if not isinstance(signal, CallStart) or signal.api not in self.apis:
            return []
        return self._pairing.compare(signal)

    def violation(
        self, result: InvariantResult[DistinctParams], signal: Signal, c: Comparison
    ) -> Violation:
        assert isinstance(signal, CallStart)
        return _violation(result, signal, c)


def _violation(
    result: InvariantResult[DistinctParams], start: CallStart, c: Comparison
) -> Violation:
    if c.scope == ACROSS_RANKS:
        what = f"{c.api} on rank {start.rank} got the same {c.name} as rank {c.other_rank}"
        observed = f"ranks {c.other_rank} and {start.rank} trained on identical data"
    else:
        what = f"{c.api} got the same {c.name} as its previous call"
        observed = f"the same {c.name} twice in a row"
    precondition = result.invariant.precondition
    return call_violation(
        result,
        start,
        what=what,
        expected=result.invariant.text_description
        + (f" when {precondition.describe()}" if precondition else ""),
        observed=observed,
    )
