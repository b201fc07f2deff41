"""StateAtCallRelation (ours): at a call boundary, every variable of a type is in one state.

``before every torch.optim.Optimizer.step, every torch.nn.Parameter has grad ==
present``. The state is read from the VarStates the tracer takes before
(``pre``) and after (``post``) a call; the attribute is whether the variable
has a gradient tensor at all: ``None`` or ``present``.

Why presence and not the value: an all-zero gradient is a legitimate numerical
outcome (every ReLU of a small CNN dead on one batch: seen in a healthy run
with batch size 16), while a *missing* gradient is structural: the parameter
was not part of the graph that ``backward()`` went through.

Which bugs: every parameter the optimizer steps must have received a gradient,
so the invariant fires *at the first step* when

- a layer was frozen by mistake (``requires_grad_(False)``: grad stays None);
- the optimizer holds stale parameters (the model was re-created: the old
  parameters never get a gradient);
- ``zero_grad()`` runs between ``backward()`` and ``step()`` (``set_to_none``).

VarPeriodicChange sees the first two only after the parameter stayed unchanged
for several steps; this relation sees the cause (no gradient) at once.

Examples are calls of the API with at least one state of the type in the
phase: positive when every such variable is in the hypothesised state. A
``post`` invariant that repeats a ``pre`` invariant of the same call, value and
precondition is dropped: the call left the state as it found it, and the
second invariant would only repeat the first one's alarms.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import NamedTuple

from traincheck.analysis.calls import CallRecord, Signal
from traincheck.analysis.invariants import APIParam, Invariant, VarTypeParam
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
from traincheck.analysis.var_attrs import ANYTHING, GRAD, grad_presence
from traincheck.analysis.violations import Violation
from traincheck.events import VarState

PHASES = ("pre", "post")
PHASE_WORDS = {"pre": "before", "post": "after"}
StateKey = tuple[str, str, str]
"""(api, phase, var_type)."""


class StateParams(NamedTuple):
    """At every call of ``api``, every variable of ``var.var_type`` has the grad presence
    ``var`` names for one phase (the other phase's value is ``anything``)."""

    api: APIParam
    var: VarTypeParam


def states_by_type(record: CallRecord, phase: str) -> dict[str, list[VarState]]:
    found: dict[str, list[VarState]] = defaultdict(list)
    for state in getattr(record, phase).values():
        found[state.var_type].append(state)
    return found


def _phase_and_value(var: VarTypeParam) -> tuple[str, str]:
    if var.pre_value != ANYTHING:
        return "pre", str(var.pre_value)
    return "post", str(var.post_value)


class _StateCollector(Collector):
    def __init__(self) -> None:
        self.calls: dict[StateKey, Counter[tuple[FeatureKey, frozenset[str]]]] = defaultdict(
            Counter
        )

    def on_signal(self, signal: Signal) -> None:
        if not isinstance(signal, CallRecord) or not (signal.pre or signal.post):
            return
        key = feature_key(signal.start.props)
        for phase in PHASES:
            for var_type, states in states_by_type(signal, phase).items():
                values = frozenset(grad_presence(s.grad) for s in states)
                self.calls[(signal.api, phase, var_type)][(key, values)] += 1


class StateAtCallRelation(Relation[StateParams, _StateCollector]):
    name = "StateAtCallRelation"
    group = "state_at_call"
    params_type = StateParams
    var_attrs = (GRAD,)

    def new_collector(self) -> _StateCollector:
        return _StateCollector()

    def infer(
        self, collector: _StateCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        for api, phase, var_type in sorted(collector.calls):
            seen = collector.calls[(api, phase, var_type)]
            for value in sorted({v for _, values in seen for v in values}):
                examples = Examples()
                for (key, values), count in seen.items():
                    positive = values == {value}
                    (examples.positives if positive else examples.negatives)[key] += count
                params = StateParams(APIParam(api), _var_param(var_type, phase, value))
                decide(self, params, examples, outcome)
        outcome.invariants = _without_repeated_post(outcome.invariants)
        return outcome

    def new_checker(self, results: Sequence[InvariantResult[StateParams]]) -> RelationChecker:
        return _StateChecker(results)

    def params_problem(self, params: StateParams) -> str | None:
        if (params.var.pre_value == ANYTHING) == (params.var.post_value == ANYTHING):
            return f"exactly one of pre_value/post_value must be {ANYTHING!r}"
        return None

    def describe(self, params: StateParams) -> str:
        api, var = params
        phase, value = _phase_and_value(var)
        return (
            f"{PHASE_WORDS[phase]} every {api.api_full_name}, every {var.var_type} "
            f"has {var.attr_name} == {value}"
        )


def _var_param(var_type: str, phase: str, value: str) -> VarTypeParam:
    if phase == "pre":
        return VarTypeParam(var_type, GRAD, value, ANYTHING)
    return VarTypeParam(var_type, GRAD, ANYTHING, value)


def _without_repeated_post(
    invariants: list[Invariant[StateParams]],
) -> list[Invariant[StateParams]]:
    """Drop post invariants whose pre twin (same call, type, value, precondition) exists."""
    pre = {
        (inv.params.api, inv.params.var.var_type, inv.params.var.pre_value, inv.precondition)
        for inv in invariants
        if inv.params.var.pre_value != ANYTHING
    }
    kept = []
    for inv in invariants:
        var = inv.params.var
        twin = (inv.params.api, var.var_type, var.post_value, inv.precondition)
        if var.pre_value == ANYTHING and twin in pre:
            continue
        kept.append(inv)
    return kept


class _StateChecker(RelationChecker):
    def __init__(self, results: Sequence[InvariantResult[StateParams]]) -> None:
        self._by_api = results_by_api(results)

    def on_signal(self, signal: Signal) -> list[Violation]:
        if not isinstance(signal, CallRecord) or signal.api not in self._by_api:
            return []
        violations = []
        for result in self._by_api[signal.api]:
            var = result.invariant.params.var
            phase, value = _phase_and_value(var)
            states = [s for s in getattr(signal, phase).values() if s.var_type == var.var_type]
            if not states or not holds(result.invariant.precondition, signal.start.props):
                continue
            wrong = [s for s in states if grad_presence(s.grad) != value]
            if not wrong:
                result.record_pass()
                continue
            violation = _violation(result, signal, phase, value, wrong)
            violations.append(result.record_violation(violation))
        return violations


def _violation(
    result: InvariantResult[StateParams],
    record: CallRecord,
    phase: str,
    value: str,
    wrong: list[VarState],
) -> Violation:
    names = sorted(s.var_name for s in wrong)
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    frozen = sum(1 for s in wrong if not s.requires_grad)
    observed = f"{len(wrong)} with grad == {grad_presence(wrong[0].grad)}"
    if frozen:
        observed += f"; {frozen} of them have requires_grad == False"
    return call_violation(
        result,
        record.start,
        what=f"{PHASE_WORDS[phase]} {record.api}, {shown} had grad != {value}",
        expected=f"every {wrong[0].var_type} has grad == {value} {PHASE_WORDS[phase]} {record.api}",
        observed=observed,
        variables=tuple(names),
        events=tuple(wrong[:4]),
    )
