"""ConstantStateRelation (ours): a variable attribute no healthy run ever changed stays as it was.

Two attributes, each learned per variable name:

- ``requires_grad`` (of parameters): ``MLP.backbone.weight.requires_grad == False at every
  torch.Tensor.backward``. A frozen parameter stays frozen and a trained one
  stays trainable. Catches a backbone that was meant to stay frozen being
  fine-tuned (a ``requires_grad_(False)`` loop dropped, a ``requires_grad_(True)``
  left over from a copied script), and a layer frozen by mistake.
- ``data``: ``MLP.backbone.weight.data never changes across
  torch.optim.Optimizer.step calls``, for the variables whose content digest was
  the same at every observation of every healthy run (frozen parameters the
  optimizer holds, buffers nothing updates). Catches a frozen part that is
  updated after all (weight decay on a frozen layer, an optimizer built before
  the freeze) and a constant buffer overwritten.

Examples are observations: every pre/post state of the variable at a traced call
(taken after set-up: stage ``init`` is neither learned from nor judged). For
``requires_grad`` an observation is positive when it has the value; for ``data``
each observation after the first one of a process is compared with the previous
one at the same API, positive when the digest is the same. A hypothesis is kept
only when *every* observation at every API was positive: this relation speaks
about variables that never change, so one change in a healthy run rejects it
(a backbone unfrozen at step 10 is not a constant). Content that changes is what
training does: it is no hypothesis and is not listed among the rejections.

Guards against false alarms:

- support: at least ``MIN_OBSERVATIONS`` observations, from at least
  ``MIN_RUNS`` traces (one run's quirk is not a rule);
- variables are matched by name (``<RootClass>.<dotted path>``), which does not
  depend on the seed or the width: a wider healthy variant checks the same
  names with other shapes. A variable only the checked run has is not judged;
- the stage: an invariant holds in the stages the healthy runs observed it in
  (``stage == 'train'`` when they never observed it in eval; unconditional
  when they observed it constant in both train and eval);
- one invariant per (variable, attribute), at the API that observed it most
  (ties: the name that sorts last, so the choice never depends on trace order),
  so one change is one alarm, not one per traced API.

In the file: ``[APIParam, VarNameParam, ValueParam]``: the API whose pre/post
states are read, the variable with attribute ``requires_grad`` or ``data``, and
``ValueParam{role: state, name: <attribute>, prop: value, value: V}`` with V the
bool ``requires_grad`` keeps, or ``"unchanged"`` for ``data``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from traincheck.analysis.calls import CallRecord, Signal
from traincheck.analysis.invariants import APIParam, ValueParam, VarNameParam, make_invariant
from traincheck.analysis.preconditions import (
    INIT_STAGE,
    Clause,
    Precondition,
    Scalar,
    holds,
)
from traincheck.analysis.relations.base import (
    DEFAULT_SETTINGS,
    TOO_FEW_POSITIVES,
    Collector,
    InferOutcome,
    InferSettings,
    InvariantResult,
    Rejection,
    Relation,
    RelationChecker,
)
from traincheck.analysis.relations.call_violation import call_violation
from traincheck.analysis.var_attrs import DATA, REQUIRES_GRAD
from traincheck.analysis.violations import Violation
from traincheck.events import VarState

MIN_OBSERVATIONS: Final = 6
"""Fewer observations of a variable than this and its constancy could be chance."""

MIN_RUNS: Final = 2
"""Traces that must have observed the variable: one run's configuration is no rule."""

PARAMETER: Final = "torch.nn.Parameter"
"""The variable type whose ``requires_grad`` is learned: a buffer's is always False by
construction, and an invariant saying so would cost a check per call and catch nothing."""

UNCHANGED: Final = "unchanged"
"""The ValueParam value of a ``data`` invariant: the digest never changes."""

STATE_ROLE: Final = "state"
"""The ValueParam role of the value a variable attribute keeps."""

ALL_STAGES: Final = frozenset({"train", "eval"})
"""Observed constant in both, an invariant is unconditional; else it holds in the
stages it was observed in."""

CHANGED_IN_HEALTHY_RUN: Final = "requires_grad changed in a healthy run"
TOO_FEW_RUNS: Final = f"observed in fewer than {MIN_RUNS} traces"


def support_problem(observations: int, runs: int) -> str | None:
    """Why a hypothesis seen this often, in this many traces, is too weak (None: it is not)."""
    if observations < MIN_OBSERVATIONS:
        return TOO_FEW_POSITIVES
    if runs < MIN_RUNS:
        return TOO_FEW_RUNS
    return None


VarKey = tuple[str, str, str]
"""(var_type, var_name, attribute)."""


class ConstantParams(NamedTuple):
    """At every call of ``api``, ``var``'s attribute has the value ``value`` names."""

    api: APIParam
    var: VarNameParam
    value: ValueParam


@dataclass
class _Evidence:
    """What the healthy runs showed about one variable attribute at one API."""

    observations: int = 0
    negatives: int = 0
    values: set[bool] = field(default_factory=set)
    traces: set[int] = field(default_factory=set)
    stages: set[str] = field(default_factory=set)

    def add(self, trace: int, stage: str, *, positive: bool) -> None:
        self.observations += 1
        self.negatives += 0 if positive else 1
        self.traces.add(trace)
        self.stages.add(stage)


def observed_states(record: CallRecord) -> Iterable[VarState]:
    """The states taken around a call, pre before post (the order they were read in)."""
    yield from record.pre.values()
    yield from record.post.values()


def call_stage(record: CallRecord) -> str:
    return str(record.start.props.get("meta_vars.stage", ""))


def stage_precondition(stages: Iterable[str]) -> Precondition | None:
    """The stages an invariant holds in: those the healthy runs observed it in, or
    every stage (None) when they observed it in train and eval alike."""
    seen = set(stages)
    if ALL_STAGES <= seen:
        return None
    clause = Clause("constant", "meta_vars.stage", "str", tuple(sorted(seen)))
    return Precondition(((clause,),))


def accept_observed(
    relation: Relation[Any, Any],
    params: Any,
    outcome: InferOutcome,
    *,
    reason: str | None,
    stages: Iterable[str],
    observations: int,
    rejected_counts: tuple[int, int] | None = None,
) -> None:
    """The invariant a relation over observed states (ConstantState, EqualVariables,
    SharedParameter) learns from a hypothesis no observation contradicted: it holds
    in the stages it was observed in. With a ``reason``, the rejection that says why
    not instead, counting ``rejected_counts`` (positives, negatives; by default the
    observations and none)."""
    text = relation.describe(params)
    if reason is not None:
        positives, negatives = rejected_counts or (observations, 0)
        outcome.rejections.append(Rejection(relation.name, text, reason, positives, negatives))
        return
    invariant = make_invariant(
        relation.name,
        params,
        stage_precondition(stages),
        group=relation.group,
        text_description=text,
        num_positive_examples=observations,
        num_negative_examples=0,
    )
    outcome.invariants.append(invariant)


class _ConstantCollector(Collector):
    def __init__(self) -> None:
        self.evidence: dict[VarKey, dict[str, _Evidence]] = defaultdict(
            lambda: defaultdict(_Evidence)
        )
        """variable attribute -> API -> what its observations there showed."""
        self._trace = -1
        self._last_digest: dict[tuple[int, str, str], int] = {}
        """(pid, api, name) -> the digest of the previous observation (this trace)."""

    def begin_trace(self) -> None:
        self._trace += 1
        self._last_digest.clear()

    def on_signal(self, signal: Signal) -> None:
        if not isinstance(signal, CallRecord) or not (signal.pre or signal.post):
            return
        stage = call_stage(signal)
        if stage == INIT_STAGE:
            return
        pid, api, trace = signal.start.pid, signal.api, self._trace
        for state in observed_states(signal):
            name = state.var_name
            if state.var_type == PARAMETER:
                rg = self.evidence[(state.var_type, name, REQUIRES_GRAD)][api]
                rg.values.add(state.requires_grad)
                rg.add(trace, stage, positive=True)
            if state.digest is None:
                continue
            previous = self._last_digest.get((pid, api, name))
            self._last_digest[(pid, api, name)] = state.digest
            if previous is not None:
                data = self.evidence[(state.var_type, name, DATA)][api]
                data.add(trace, stage, positive=previous == state.digest)


class ConstantStateRelation(Relation[ConstantParams, _ConstantCollector]):
    name = "ConstantStateRelation"
    group = "constant_state"
    params_type = ConstantParams
    var_attrs = (DATA, REQUIRES_GRAD)

    def new_collector(self) -> _ConstantCollector:
        return _ConstantCollector()

    def infer(
        self, collector: _ConstantCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        for var, per_api in sorted(collector.evidence.items()):
            if not any(e.negatives for e in per_api.values()):
                self._decide(var, per_api, outcome)
            # else: content that changes is what training does, not a hypothesis
        return outcome

    def _decide(self, var: VarKey, per_api: dict[str, _Evidence], outcome: InferOutcome) -> None:
        """One invariant for a variable attribute no observation saw change, at the API
        that observed it most; or the rejection that says why not."""
        var_type, var_name, attr = var
        values = {v for evidence in per_api.values() for v in evidence.values}
        kept: Scalar = UNCHANGED if attr == DATA else next(iter(values), True)
        api, best = max(per_api.items(), key=lambda item: (item[1].observations, item[0]))
        params = ConstantParams(
            APIParam(api),
            VarNameParam(var_type, var_name, attr),
            ValueParam(STATE_ROLE, attr, "value", kept),
        )
        reason = support_problem(best.observations, len(best.traces))
        if len(values) > 1:
            reason = CHANGED_IN_HEALTHY_RUN
        total = sum(e.observations for e in per_api.values())
        accept_observed(
            self,
            params,
            outcome,
            reason=reason,
            stages=best.stages,
            observations=best.observations,
            rejected_counts=(total, 0),
        )

    def new_checker(self, results: Sequence[InvariantResult[ConstantParams]]) -> RelationChecker:
        return _ConstantChecker(results)

    def params_problem(self, params: ConstantParams) -> str | None:
        value = params.value
        if value.role != STATE_ROLE or value.name != params.var.attr_name:
            return f"the ValueParam must have role {STATE_ROLE!r} and name the variable's attribute"
        if params.var.attr_name == DATA and value.value != UNCHANGED:
            return f"a data invariant's value must be {UNCHANGED!r}"
        if params.var.attr_name == REQUIRES_GRAD and not isinstance(value.value, bool):
            return "a requires_grad invariant's value must be a bool"
        return None

    def describe(self, params: ConstantParams) -> str:
        api, var, value = params
        if var.attr_name == DATA:
            return f"{var.var_name}.data never changes across {api.api_full_name} calls"
        return f"{var.var_name}.{var.attr_name} == {value.value} at every {api.api_full_name}"


@dataclass
class _Watched:
    """One invariant as its checker reads it."""

    name: str
    attr: str
    expected: Scalar
    result: InvariantResult[ConstantParams]


class _ConstantChecker(RelationChecker):
    def __init__(self, results: Sequence[InvariantResult[ConstantParams]]) -> None:
        self._by_api: dict[str, list[_Watched]] = defaultdict(list)
        for result in results:
            api, var, value = result.invariant.params
            watched = _Watched(var.var_name, var.attr_name, value.value, result)
            self._by_api[api.api_full_name].append(watched)
        self._last_digest: dict[tuple[int, str, str], VarState] = {}
        """(pid, api, name) -> the previous observation with a digest (after set-up)."""

    def on_signal(self, signal: Signal) -> list[Violation]:
        if not isinstance(signal, CallRecord) or signal.api not in self._by_api:
            return []
        if call_stage(signal) == INIT_STAGE:
            return []
        violations = []
        for watched in self._by_api[signal.api]:
            states = [s for s in (signal.pre.get(watched.name), signal.post.get(watched.name)) if s]
            if not states:
                continue
            if watched.attr == DATA:
                violation = self._judge_data(signal, watched, states)
            else:
                violation = _judge_requires_grad(signal, watched, states)
            if violation is not None:
                violations.append(watched.result.record_violation(violation))
        return violations

    def _judge_data(
        self, record: CallRecord, watched: _Watched, states: list[VarState]
    ) -> Violation | None:
        """Compare each digested state with the previous one of the process at this API."""
        key = (record.start.pid, record.api, watched.name)
        compared, change = False, None
        for state in states:
            if state.digest is None:
                continue
            previous = self._last_digest.get(key)
            self._last_digest[key] = state
            if previous is None or previous.digest is None:
                continue
            compared = True
            if previous.digest != state.digest and change is None:
                change = (previous, state)
        if not compared or not holds(watched.result.invariant.precondition, record.start.props):
            return None
        if change is None:
            watched.result.record_pass()
            return None
        before, after = change
        where = "during" if before.call_id == after.call_id else "before"
        return call_violation(
            watched.result,
            record.start,
            what=f"{watched.name} changed {where} {record.api}",
            expected=f"{watched.name}.data never changes (constant in every healthy run)",
            observed=f"content digest changed (requires_grad {after.requires_grad}, "
            f"grad {after.grad}, shape {list(after.shape)})",
            variables=(watched.name,),
            events=(before, after),
        )


def _judge_requires_grad(
    record: CallRecord, watched: _Watched, states: list[VarState]
) -> Violation | None:
    if not holds(watched.result.invariant.precondition, record.start.props):
        return None
    wrong = [s for s in states if s.requires_grad != watched.expected]
    if not wrong:
        watched.result.record_pass()
        return None
    phase = "before" if wrong[0].phase == "pre" else "after"
    return call_violation(
        watched.result,
        record.start,
        what=f"{watched.name}.requires_grad is {wrong[0].requires_grad} {phase} {record.api}",
        expected=f"{watched.name}.requires_grad == {watched.expected} "
        "(as at every observation of the healthy runs)",
        observed=f"requires_grad == {wrong[0].requires_grad} (grad {wrong[0].grad})",
        variables=(watched.name,),
        events=tuple(wrong[:2]),
    )
