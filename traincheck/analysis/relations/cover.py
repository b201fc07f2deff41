"""FunctionCoverRelation: before each B, some A ran since the previous B (or the start).

Cover(zero_grad, step) catches a removed ``optimizer.zero_grad()`` (silent gradient
accumulation) at the very first step. Examples are B's outermost calls (their
before-windows); the precondition is evaluated on B's call.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from traincheck.analysis.calls import CallStart, Signal
from traincheck.analysis.invariants import APIParam
from traincheck.analysis.preconditions import holds
from traincheck.analysis.relations.base import (
    DEFAULT_SETTINGS,
    Collector,
    Examples,
    InferOutcome,
    InferSettings,
    InvariantResult,
    Relation,
    RelationChecker,
    decide,
)
from traincheck.analysis.relations.call_violation import call_violation
from traincheck.analysis.relations.ordering import (
    ApiPair,
    ThreadOrder,
    WindowCollector,
    anchor_of,
    outermost_call,
)
from traincheck.analysis.violations import Violation


class _CoverCollector(WindowCollector, Collector):
    pass


class FunctionCoverRelation(Relation[ApiPair, _CoverCollector]):
    name = "FunctionCoverRelation"
    group = "func_cover"
    params_type = ApiPair

    def new_collector(self) -> _CoverCollector:
        return _CoverCollector()

    def infer(
        self, collector: _CoverCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        for a, b in collector.candidate_pairs():
            examples = Examples()
            for (api, key, window), count in collector.before.items():
                if api == b:
                    (examples.positives if a in window else examples.negatives)[key] += count
            decide(self, ApiPair(APIParam(a), APIParam(b)), examples, outcome)
        return outcome

    def new_checker(self, results: Sequence[InvariantResult[ApiPair]]) -> RelationChecker:
        return _CoverChecker(results)

    def describe(self, params: ApiPair) -> str:
        a, b = params.names
        return f"{a} is called before every {b} (since the previous {b})"


class _CoverChecker(RelationChecker):
    def __init__(self, results: Sequence[InvariantResult[ApiPair]]) -> None:
        self._by_b: dict[str, list[tuple[str, InvariantResult[ApiPair]]]] = defaultdict(list)
        for result in results:
            a, b = result.invariant.params.names
            self._by_b[b].append((a, result))
        self._threads: dict[tuple[int, int], ThreadOrder] = {}

    def on_signal(self, signal: Signal) -> list[Violation]:
        start = outermost_call(signal)
        if start is None:
            return []
        order = self._threads.setdefault((start.pid, start.thread), ThreadOrder())
        anchor = anchor_of(start)
        violations = []
        for a, result in self._by_b.get(start.api, ()):
            if not holds(result.invariant.precondition, start.props):
                continue
            if order.called_since(anchor, a):
                result.record_pass()
            else:
                previous = order.anchor_start.get(anchor)
                violations.append(result.record_violation(_violation(result, a, start, previous)))
        order.advance(start, anchor)
        return violations


def _violation(
    result: InvariantResult[ApiPair], a: str, start: CallStart, previous: CallStart | None
) -> Violation:
    b = start.api
    if previous is None:
        since = f"before this {b}, the first one checked"
    else:
        since = f"since the previous {b} (step {previous.event.step})"
    return call_violation(
        result,
        start,
        apis=(a, b),
        what=f"{b} was called without a {a} call before it",
        expected=f"{a} is called before every {b}",
        observed=f"no {a} call {since}",
        earlier=(previous.event,) if previous is not None else (),
    )
