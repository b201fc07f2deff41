"""APIContainRelation: every call of an API contains an event.

Two kinds of contained event:

- a variable change: some variable of ``var_type`` changes ``attr`` during the
  call (``data``: content digest changed, written ``anything -> changed``;
  ``grad``: grad state went from ``pre_value`` to ``post_value``), e.g.
  ``Optimizer.step changes Parameter.data``,
  ``Optimizer.zero_grad changes Parameter.grad from non_zero to None``;
- a child API call (``parent_id`` link), e.g. ``Tensor.backward calls autograd.backward``.

Examples are calls of the parent API: positive when the event happened inside,
negative when not. A call without before/after states of ``var_type`` is not an
example (nothing can be said); at check time it counts as "unchecked". The check
runs when the parent call returns.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from traincheck.analysis.calls import CallRecord, Change, Signal
from traincheck.analysis.invariants import APIParam, VarTypeParam
from traincheck.analysis.preconditions import FeatureKey, feature_key, holds
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
    results_by_api,
)
from traincheck.analysis.relations.call_violation import call_violation
from traincheck.analysis.var_attrs import ANYTHING, DATA, GRAD, grad_value_text
from traincheck.analysis.violations import Violation
from traincheck.events import ApiReturn

MAX_EVIDENCE_STATES = 8


class ContainParams(NamedTuple):
    """Every call of ``api`` contains ``event``: a call of another API, or a variable change."""

    api: APIParam
    event: APIParam | VarTypeParam


@dataclass(frozen=True)
class _CallSummary:
    """What inference needs from one call; identical calls collapse to one counter key."""

    key: FeatureKey
    observed_types: frozenset[str]
    changes: frozenset[Change]
    children: frozenset[str]


class _ContainCollector(Collector):
    def __init__(self) -> None:
        self.calls: dict[str, Counter[_CallSummary]] = defaultdict(Counter)

    def on_signal(self, signal: Signal) -> None:
        if not isinstance(signal, CallRecord):
            return
        summary = _CallSummary(
            feature_key(signal.start.props),
            frozenset(signal.observed_types()),
            frozenset(signal.changes()),
            frozenset(signal.child_apis()),
        )
        self.calls[signal.api][summary] += 1


class APIContainRelation(Relation[ContainParams, _ContainCollector]):
    name = "APIContainRelation"
    group = "parent_func_call_pre"
    params_type = ContainParams
    var_attrs = (DATA, GRAD)

    def new_collector(self) -> _ContainCollector:
        return _ContainCollector()

    def infer(
        self, collector: _ContainCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        for api in sorted(collector.calls):
            calls = collector.calls[api]
            changes = sorted({c for s in calls for c in s.changes}, key=_change_sort_key)
            for change in changes:
                params = ContainParams(APIParam(api), VarTypeParam(*change))
                decide(self, params, _change_examples(calls, change), outcome)
            for child in sorted({c for s in calls for c in s.children}):
                params = ContainParams(APIParam(api), APIParam(child))
                decide(self, params, _child_examples(calls, child), outcome)
        return outcome

    def new_checker(self, results: Sequence[InvariantResult[ContainParams]]) -> RelationChecker:
        return _ContainChecker(results)

    def describe(self, params: ContainParams) -> str:
        parent, event = params.api.api_full_name, params.event
        if isinstance(event, APIParam):
            return f"{parent} calls {event.api_full_name}"
        target = f"{event.var_type}.{event.attr_name}"
        if event.pre_value == ANYTHING:
            return f"{parent} changes {target}"
        return (
            f"{parent} changes {target} from "
            f"{grad_value_text(event.pre_value)} to {grad_value_text(event.post_value)}"
        )


def _change_sort_key(change: Change) -> tuple[str, str, str, str]:
    return tuple(str(part) for part in change)  # type: ignore[return-value]


def _change_examples(calls: Counter[_CallSummary], change: Change) -> Examples:
    examples = Examples()
    for summary, count in calls.items():
        if change[0] not in summary.observed_types:
            continue
        target = examples.positives if change in summary.changes else examples.negatives
        target[summary.key] += count
    return examples


def _child_examples(calls: Counter[_CallSummary], child: str) -> Examples:
    examples = Examples()
    for summary, count in calls.items():
        target = examples.positives if child in summary.children else examples.negatives
        target[summary.key] += count
    return examples


class _ContainChecker(RelationChecker):
    def __init__(self, results: Sequence[InvariantResult[ContainParams]]) -> None:
        self._by_api = results_by_api(results)

    def on_signal(self, signal: Signal) -> list[Violation]:
        if not isinstance(signal, CallRecord) or signal.api not in self._by_api:
            return []
        violations = []
        changes: set[Change] | None = None
        for result in self._by_api[signal.api]:
            inv = result.invariant
            if not holds(inv.precondition, signal.start.props):
                continue
            event = inv.params.event
            if isinstance(event, APIParam):
                if event.api_full_name in signal.child_apis():
                    result.record_pass()
                else:
                    violations.append(
                        result.record_violation(_missing_child(signal, result, event))
                    )
                continue
            if event.var_type not in signal.observed_types():
                result.unchecked += 1
                continue
            if changes is None:
                changes = signal.changes()
            change = (event.var_type, event.attr_name, event.pre_value, event.post_value)
            if change in changes:
                result.record_pass()
            else:
                violations.append(result.record_violation(_missing_change(signal, result, event)))
        return violations


def _missing_child(
    signal: CallRecord, result: InvariantResult[ContainParams], child: APIParam
) -> Violation:
    seen = sorted(signal.child_apis())
    return call_violation(
        result,
        signal.start,
        apis=(signal.api, child.api_full_name),
        what=f"{signal.api} did not call {child.api_full_name}",
        expected=f"every {signal.api} call calls {child.api_full_name}",
        observed=f"it called {', '.join(seen) if seen else 'no traced API'}",
        events=_returned(signal),
    )


def _missing_change(
    signal: CallRecord, result: InvariantResult[ContainParams], var: VarTypeParam
) -> Violation:
    seen = signal.transitions(var.var_type, var.attr_name)
    names = tuple(sorted(n for n, s in signal.pre.items() if s.var_type == var.var_type))
    observed = ", ".join(f"{word} x{n}" for word, n in sorted(seen.items()))
    subject = (
        "the parameters"
        if var.var_type == "torch.nn.Parameter"
        else f"the {var.var_type} variables"
    )
    if var.pre_value == ANYTHING:
        what = f"{signal.api} does not change {subject} (no {var.var_type}.data changed)"
        expected = f"at least one {var.var_type}.data changes during {signal.api}"
        observed = f"{var.attr_name} of {len(names)} tracked variables: {observed}"
    else:
        change = f"{grad_value_text(var.pre_value)} to {grad_value_text(var.post_value)}"
        what = f"{signal.api} does not change {var.var_type}.{var.attr_name} from {change}"
        expected = (
            f"at least one {var.var_type}.{var.attr_name} goes from {change} during {signal.api}"
        )
        observed = f"grad before -> after for {len(names)} tracked variables: {observed}"
    evidence = [
        s for n in names[:MAX_EVIDENCE_STATES] for s in (signal.pre[n], signal.post.get(n)) if s
    ]
    return call_violation(
        result,
        signal.start,
        variables=names,
        what=what,
        expected=expected,
        observed=observed,
        events=(*_returned(signal), *evidence),
    )


def _returned(signal: CallRecord) -> tuple[ApiReturn, ...]:
    """The call's return event, when the tracer sent one (the call ended here)."""
    return (signal.ret,) if signal.ret else ()
