"""FunctionLeadRelation: after each A, a B is called before the next A.

Examples are A's outermost calls (their after-windows); the precondition is
evaluated on that A call. The window after the *last* A of a run is censored: a
run can stop anywhere (a shorter run, a killed job, validation at other steps),
so when the stream ends before a B that window counts neither as a violation
when checking nor as a counter-example when inferring; with a B in it, it is a
positive example like any other.
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
    Anchor,
    ApiPair,
    ThreadOrder,
    WindowCollector,
    anchor_of,
    outermost_call,
)
from traincheck.analysis.violations import Violation


class _LeadCollector(WindowCollector, Collector):
    pass


class FunctionLeadRelation(Relation[ApiPair, _LeadCollector]):
    name = "FunctionLeadRelation"
    group = "func_lead"
    params_type = ApiPair

    def new_collector(self) -> _LeadCollector:
        return _LeadCollector()

    def infer(
        self, collector: _LeadCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        for a, b in collector.candidate_pairs():
            examples = Examples()
            for (api, key, window), count in collector.after.items():
                if api == a:
                    (examples.positives if b in window else examples.negatives)[key] += count
            for (api, key, window), count in collector.after_final.items():
                if api == a and b in window:
                    examples.positives[key] += count
            decide(self, ApiPair(APIParam(a), APIParam(b)), examples, outcome)
        return outcome

    def new_checker(self, results: Sequence[InvariantResult[ApiPair]]) -> RelationChecker:
        return _LeadChecker(results)

    def describe(self, params: ApiPair) -> str:
        a, b = params.names
        return f"every {a} is followed by {b} before the next {a}"


class _LeadChecker(RelationChecker):
    def __init__(self, results: Sequence[InvariantResult[ApiPair]]) -> None:
        self._by_a: dict[str, list[tuple[str, InvariantResult[ApiPair]]]] = defaultdict(list)
        for result in results:
            a, b = result.invariant.params.names
            self._by_a[a].append((b, result))
        self._threads: dict[tuple[int, int], ThreadOrder] = {}

    def on_signal(self, signal: Signal) -> list[Violation]:
        start = outermost_call(signal)
        if start is None:
            return []
        order = self._threads.setdefault((start.pid, start.thread), ThreadOrder())
        anchor = anchor_of(start)
        violations = self._judge(order, anchor, next_call=start)
        order.advance(start, anchor)
        return violations

    def finish(self) -> list[Violation]:
        """Credit the censored last windows that saw their B; never blame the others."""
        for _, order in sorted(self._threads.items()):
            for anchor in sorted(order.anchor_start, key=repr):
                self._judge(order, anchor, next_call=None)
        return []

    def _judge(
        self, order: ThreadOrder, anchor: Anchor, next_call: CallStart | None
    ) -> list[Violation]:
        """Judge the window after the last ``anchor`` call, which ``next_call`` (or the
        end) closes.

        At the end of the stream (``next_call`` None) a window without B is censored:
        neither passed nor violated.
        """
        previous = order.anchor_start.get(anchor)
        if previous is None:
            return []
        violations = []
        for b, result in self._by_a.get(anchor[0], ()):
            if not holds(result.invariant.precondition, previous.props):
                continue
            if order.called_since(anchor, b):
                result.record_pass()
            elif next_call is not None:
                violations.append(
                    result.record_violation(_violation(result, b, previous, next_call))
                )
        return violations


def _violation(
    result: InvariantResult[ApiPair], b: str, previous: CallStart, next_call: CallStart
) -> Violation:
    a = previous.api
    until = f"before the next {a} (step {next_call.event.step})"
    return call_violation(
        result,
        previous,
        apis=(a, b),
        what=f"{a} was not followed by {b}",
        expected=f"every {a} is followed by {b} before the next {a}",
        observed=f"no {b} call {until}",
        events=(next_call.event,),
    )
