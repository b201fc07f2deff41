"""SharedParameterRelation (ours): a path that held the same Parameter as another keeps it.

``TiedLM.head.weight is the same Parameter as TiedLM.embed.weight at every
torch.optim.Optimizer.step``. Weight tying the way GPT-2 and Hugging Face's
``tie_weights`` do it registers *one* ``Parameter`` under two module paths;
``named_parameters()`` lists it once, so the trace has one variable and
EqualVariables has no pair to compare. The tracer records the other paths of
each shared parameter with its states (``VarState.aliases``, read when the model
structure is read, see :mod:`traincheck.tracer.models`), and this relation
learns them. Catches the tie missing or broken: the tying line dropped, the head
re-created (or cloned, or loaded as a copy) after tying. The head then trains as
a matrix of its own while the model is believed tied.

Examples are observations: every pre/post state of a traced call after set-up
(stage ``init`` is neither learned from nor judged). For the hypothesis "path
``alias`` is the same Parameter as variable ``owner``", an observation of
``owner`` is positive when ``alias`` is among its aliases and negative when it
is not; an observation of ``alias`` as a variable of its own is negative (the
path holds another Parameter). Kept only with no negative at any API: a model
untied on purpose mid-run in a healthy run is no tie to keep.

Guards against false alarms:

- support: at least ``MIN_OBSERVATIONS`` observations; **one** healthy run is
  enough (unlike ConstantState's values): which paths share a Parameter is the
  structure of the model the script builds, not a value that a seed, a width,
  a batch size or an lr moves;
- only ties the healthy runs made are hypotheses: a model that ties nothing has
  no aliases in its trace and yields nothing to check;
- names, not shapes, identify variables, so a wider variant checks the same pair;
- the stage rule of ConstantState, and one invariant per pair at the API that
  observed it most (ties: the name sorting last), so one broken tie is one alarm.

Identity needs no digest: the aliases travel with every state the tracer takes,
so the state before a call (any point that records the variable) is enough; the
instrumentation plan asks for that point without digests.

In the file: ``[APIParam, VarNameParam, VarNameParam]`` (the API, the variable
named in the trace, the other path), attribute ``identity`` on both.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from traincheck.analysis.calls import CallRecord, Signal
from traincheck.analysis.invariants import APIParam, VarNameParam
from traincheck.analysis.preconditions import INIT_STAGE, holds
from traincheck.analysis.relations.base import (
    DEFAULT_SETTINGS,
    TOO_FEW_POSITIVES,
    Collector,
    InferOutcome,
    InferSettings,
    InvariantResult,
    Relation,
    RelationChecker,
    results_by_api,
)
from traincheck.analysis.relations.call_violation import call_violation
from traincheck.analysis.relations.constant_state import (
    MIN_OBSERVATIONS,
    accept_observed,
    call_stage,
    observed_states,
)
from traincheck.analysis.var_attrs import IDENTITY
from traincheck.analysis.violations import Violation
from traincheck.events import VarState

UNTIED_IN_HEALTHY_RUN = "a Parameter of its own in a healthy run"


class SharedParams(NamedTuple):
    """At every call of ``api``, the path ``alias`` holds the Parameter named ``owner``."""

    api: APIParam
    owner: VarNameParam
    alias: VarNameParam


@dataclass
class _Evidence:
    """What the healthy runs showed about one (owner, alias) pair at one API."""

    positives: int = 0
    var_type: str = ""
    stages: set[str] = field(default_factory=set)


class _SharedCollector(Collector):
    def __init__(self) -> None:
        self.pairs: dict[tuple[str, str], dict[str, _Evidence]] = defaultdict(
            lambda: defaultdict(_Evidence)
        )
        """(owner, alias) -> API -> its positive observations there."""
        self.observed: Counter[tuple[str, str]] = Counter()
        """(api, variable name) -> observations (every variable: negatives are the
        observations of an owner without the alias, and of the alias on its own)."""

    def on_signal(self, signal: Signal) -> None:
        if not isinstance(signal, CallRecord) or not (signal.pre or signal.post):
            return
        stage = call_stage(signal)
        if stage == INIT_STAGE:
            return
        api, observed = signal.api, self.observed
        for state in observed_states(signal):
            observed[(api, state.var_name)] += 1
            for alias in state.aliases:
                evidence = self.pairs[(state.var_name, alias)][api]
                evidence.positives += 1
                evidence.var_type = state.var_type
                evidence.stages.add(stage)

    def negatives(self, api: str, owner: str, alias: str, positives: int) -> int:
        return self.observed[(api, owner)] - positives + self.observed[(api, alias)]


class SharedParameterRelation(Relation[SharedParams, _SharedCollector]):
    name = "SharedParameterRelation"
    group = "shared_parameter"
    params_type = SharedParams
    var_attrs = (IDENTITY,)

    def new_collector(self) -> _SharedCollector:
        return _SharedCollector()

    def infer(
        self, collector: _SharedCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        for (owner, alias), per_api in sorted(collector.pairs.items()):
            api, best = max(per_api.items(), key=lambda item: (item[1].positives, item[0]))
            params = SharedParams(
                APIParam(api),
                VarNameParam(best.var_type, owner, IDENTITY),
                VarNameParam(best.var_type, alias, IDENTITY),
            )
            negatives = sum(
                collector.negatives(seen, owner, alias, e.positives) for seen, e in per_api.items()
            )
            reason = None
            if negatives:
                reason = UNTIED_IN_HEALTHY_RUN
            elif best.positives < MIN_OBSERVATIONS:
                reason = TOO_FEW_POSITIVES
            accept_observed(
                self,
                params,
                outcome,
                reason=reason,
                stages=best.stages,
                observations=best.positives,
                rejected_counts=(best.positives, negatives),
            )
        return outcome

    def new_checker(self, results: Sequence[InvariantResult[SharedParams]]) -> RelationChecker:
        return _SharedChecker(results)

    def describe(self, params: SharedParams) -> str:
        api, owner, alias = params
        return (
            f"{alias.var_name} is the same Parameter as {owner.var_name} "
            f"at every {api.api_full_name}"
        )


class _SharedChecker(RelationChecker):
    def __init__(self, results: Sequence[InvariantResult[SharedParams]]) -> None:
        self._by_api = results_by_api(results)

    def on_signal(self, signal: Signal) -> list[Violation]:
        if not isinstance(signal, CallRecord) or signal.api not in self._by_api:
            return []
        if call_stage(signal) == INIT_STAGE:
            return []
        violations = []
        for result in self._by_api[signal.api]:
            _, owner, alias = result.invariant.params
            judged, broken = _judge(signal, owner.var_name, alias.var_name)
            if not judged or not holds(result.invariant.precondition, signal.start.props):
                continue
            if broken is None:
                result.record_pass()
                continue
            violation = _violation(result, signal, broken)
            violations.append(result.record_violation(violation))
        return violations


def _judge(record: CallRecord, owner: str, alias: str) -> tuple[bool, VarState | None]:
    """(whether the call observed the pair, the first state that shows it untied)."""
    judged = False
    for phase in (record.pre, record.post):
        for name in (alias, owner):
            state = phase.get(name)
            if state is None:
                continue
            judged = True
            if name == alias or alias not in state.aliases:
                return True, state
    return judged, None


def _violation(
    result: InvariantResult[SharedParams], record: CallRecord, broken: VarState
) -> Violation:
    _, owner_param, alias_param = result.invariant.params
    owner, alias = owner_param.var_name, alias_param.var_name
    phase = "before" if broken.phase == "pre" else "after"
    if broken.var_name == alias:
        observed = (
            f"{alias} is a Parameter of its own (shape {list(broken.shape)}, "
            f"requires_grad {broken.requires_grad}): the tie is missing or was broken"
        )
    else:
        paths = ", ".join(broken.aliases) or "no other path"
        observed = f"{owner} is registered under {paths}, not under {alias}"
    return call_violation(
        result,
        record.start,
        what=f"{alias} is not the same Parameter as {owner} {phase} {record.api}",
        expected=f"{alias} is the same Parameter as {owner} (tied in every healthy run)",
        observed=observed,
        variables=(owner, alias),
        events=(broken,),
    )
