"""FunctionCoverRelation: before each B, some A ran since the previous B (or the start).

Cover(zero_grad, step) catches a removed ``optimizer.zero_grad()`` (silent gradient
accumulation) at the very first step. Examples are B's outermost calls (their
before-windows); the precondition is evaluated on B's call.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from traincheck.analysis.calls import CallStart, Signal
from traincheck.analysis.invariants import APIParam, Param
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
    ApiPairParams,
    ThreadOrder,
    WindowCollector,
    api_pair,
    outermost_call,
)
from traincheck.analysis.violations import Violation


class _CoverCollector(WindowCollector, Collector):
    pass


class FunctionCoverRelation(ApiPairParams, Relation):
    name = "FunctionCoverRelation"
    group = "func_cover"

    def new_collector(self) -> Collector:
        return _CoverCollector()

    def infer(
        self, collector: Collector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        assert isinstance(collector, _CoverCollector)
        outcome = InferOutcome(settings=settings)
        for a, b in collector.candidate_pairs():
            examples = Examples()
            for (api, key, window), count in collector.before.items():
                if api == b:
                    (examples.positives if a in window else examples.negatives)[key] += count
            decide(self, (APIParam(a), APIParam(b)), examples, outcome)
        return outcome

    def new_checker(self, results: Sequence[InvariantResult]) -> RelationChecker:
        return _CoverChecker(results)

    def describe(self, params: tuple[Param, ...]) -> str:
        a, b = api_pair(params)
        return f"{a} is called before every {b} (since the previous {b})"


class _CoverChecker(RelationChecker):
    def __init__(self, results: Sequence[InvariantResult]) -> None:
        self._by_b: dict[str, list[tuple[str, InvariantResult]]] = defaultdict(list)
        for result in results:
            a, b = api_pair(result.invariant.params)
            self._by_b[b].append((a, result))
        self._threads: dict[tuple[int, int], ThreadOrder] = {}

    def on_signal(self, signal: Signal) -> list[Violation]:
        start = outermost_call(signal)
        if start is None:
            return []
        order = self._threads.setdefault((start.pid, start.thread), ThreadOrder())
        violations = []
        for a, result in self._by_b.get(start.api, ()):
            if not holds(result.invariant.precondition, start.props):
                continue
            if order.called_since(start.api, a):
                result.record_pass()
            else:
                previous = order.last_start.get(start.api)
                violations.append(result.record_violation(_violation(result, a, start, previous)))
        order.advance(start)
        return violations


def _violation(
    result: InvariantResult, a: str, start: CallStart, previous: CallStart | None
) -> Violation:
    b = start.api
    if previous is None:
        since = "since the start of the run"
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
