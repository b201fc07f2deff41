"""VarPeriodicChangeRelation: a named variable changes at every call of an API.

``MLP.fc1.weight.data changes at every torch.optim.Optimizer.step``: each
trainable parameter is updated by every optimizer step that holds it. Catches a
layer frozen by mistake (it stays in the optimizer, gets no gradient, and Adam
skips it) and any update that silently does nothing to one parameter, which the
type-level APIContain invariant ("*some* parameter changes") cannot see while
the other layers still train.

Examples are calls of the API that took before/after digests of the variable:
positive when the digest changed. Calls that did not observe the variable (an
optimizer that does not hold it) are no examples and are not checked.

False-alarm guard: a parameter whose gradient is numerically negligible (a
convolution bias right before BatchNorm) sometimes gets an update below float
resolution, so an isolated unchanged call happens in healthy runs with another
seed or learning rate. Inference stays strict (every call of the healthy runs
must change it), but the checker reports a violation only once the variable has
stayed unchanged for ``UNCHANGED_CALLS_LIMIT`` consecutive calls that observed
it: a frozen parameter never changes, a noisy one changes again soon.

A variable no call ever observes makes the invariant vacuous, not violated: the
generator of a GAN whose own optimizer never steps (``opt_d.step()`` written for
``opt_g.step()``), a head left out of the optimizer. So inference also notes,
as the hint ``first_update_within``, how many calls of the API into each healthy
run the variable was first observed (the largest over the runs), when that is
at most ``FROM_START_CALLS``; the checker then reports the variable if no call
of the API has observed it after ``max(UNCHANGED_CALLS_LIMIT, 2 x hint)`` calls
in a process. A variable first updated later in the healthy runs (a backbone
unfrozen at step 10) gets no hint: unfreezing later is not a bug.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import NamedTuple

from traincheck.analysis.calls import CallRecord, Signal
from traincheck.analysis.invariants import APIParam, VarNameParam
from traincheck.analysis.preconditions import FeatureKey, feature_key, holds
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
from traincheck.analysis.var_attrs import DATA
from traincheck.analysis.violations import Violation
from traincheck.events import VarState

UNCHANGED_CALLS_LIMIT = 8
"""Consecutive observed calls without a change before the checker reports."""

FROM_START_CALLS = 4
"""A variable first observed within this many calls of the API in every healthy
run is expected to be observed early in a checked run too."""

FIRST_UPDATE_HINT = "first_update_within"

VarKey = tuple[str, str, str]
"""(api, var_type, var_name)."""


class PeriodicParams(NamedTuple):
    """The named variable ``var`` changes at every call of ``api``."""

    api: APIParam
    var: VarNameParam


def digest_change(record: CallRecord, name: str) -> tuple[bool, VarState, VarState] | None:
    """Whether ``name``'s content changed during the call; None when not observed."""
    before, after = record.pre.get(name), record.post.get(name)
    if before is None or after is None or before.digest is None or after.digest is None:
        return None
    return before.digest != after.digest, before, after


class _PeriodicCollector(Collector):
    def __init__(self) -> None:
        self.calls = KeyedExamples[VarKey]()
        """var -> calls of the API that changed it."""
        self.api_calls: Counter[tuple[int, str]] = Counter()
        """(pid, api) -> calls of the API with variable states seen so far."""
        self.first_seen: dict[VarKey, dict[int, int]] = defaultdict(dict)
        """var -> pid -> the call (1-based, per process) that first observed it."""

    def on_signal(self, signal: Signal) -> None:
        if not isinstance(signal, CallRecord) or not signal.pre:
            return
        pid = signal.start.pid
        self.api_calls[(pid, signal.api)] += 1
        key: FeatureKey | None = None
        for name in signal.pre:
            seen = digest_change(signal, name)
            if seen is None:
                continue
            if key is None:
                key = feature_key(signal.start.props)
            changed, before, _ = seen
            var = (signal.api, before.var_type, name)
            self.calls.add(var, key, changed)
            self.first_seen[var].setdefault(pid, self.api_calls[(pid, signal.api)])

    def first_update_hint(self, var: VarKey) -> tuple[tuple[str, int], ...]:
        """``first_update_within`` when every process calling the API observed the
        variable within its first ``FROM_START_CALLS`` calls (else no hint)."""
        pids = [pid for pid, api in self.api_calls if api == var[0]]
        firsts = [self.first_seen[var].get(pid) for pid in pids]
        if not firsts or any(f is None or f > FROM_START_CALLS for f in firsts):
            return ()
        return ((FIRST_UPDATE_HINT, max(f for f in firsts if f is not None)),)


class VarPeriodicChangeRelation(Relation[PeriodicParams, _PeriodicCollector]):
    name = "VarPeriodicChangeRelation"
    group = "var_change"
    params_type = PeriodicParams
    var_attrs = (DATA,)

    def new_collector(self) -> _PeriodicCollector:
        return _PeriodicCollector()

    def infer(
        self, collector: _PeriodicCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        for (api, var_type, var_name), examples in collector.calls.in_order():
            if not examples.positives:
                continue
            params = PeriodicParams(APIParam(api), VarNameParam(var_type, var_name, DATA))
            hints = collector.first_update_hint((api, var_type, var_name))
            decide(self, params, examples, outcome, hints)
        return outcome

    def new_checker(self, results: Sequence[InvariantResult[PeriodicParams]]) -> RelationChecker:
        return _PeriodicChecker(results)

    def describe(self, params: PeriodicParams) -> str:
        api, var = params
        return f"{var.var_name}.{var.attr_name} changes at every {api.api_full_name}"


_Watched = list[tuple[str, InvariantResult[PeriodicParams]]]
"""(variable name, its invariant's result) of the invariants about one API."""


class _PeriodicChecker(RelationChecker):
    def __init__(self, results: Sequence[InvariantResult[PeriodicParams]]) -> None:
        self._by_api: dict[str, _Watched] = defaultdict(list)
        for result in results:
            api, var = result.invariant.params
            self._by_api[api.api_full_name].append((var.var_name, result))
        self._unchanged: Counter[tuple[int, str, str]] = Counter()
        self._first_update: dict[str, int] = {}
        """invariant id -> its ``first_update_within`` hint, read once here (the
        check below runs for every call that does not hold the variable)."""
        for result in results:
            hint = result.invariant.hint(FIRST_UPDATE_HINT)
            if hint is not None:
                self._first_update[result.invariant.id] = hint
        self._calls: Counter[tuple[int, str]] = Counter()
        self._observed: set[tuple[int, str]] = set()
        """(pid, invariant id) of variables some call of this process observed."""

    def on_signal(self, signal: Signal) -> list[Violation]:
        if not isinstance(signal, CallRecord) or signal.api not in self._by_api:
            return []
        violations = []
        pid = signal.start.pid
        if signal.pre:
            self._calls[(pid, signal.api)] += 1
        for name, result in self._by_api[signal.api]:
            seen = digest_change(signal, name)
            if seen is None:
                never = self._never_observed(signal, name, result)
                if never is not None:
                    violations.append(result.record_violation(never))
                continue
            self._observed.add((pid, result.invariant.id))
            if not holds(result.invariant.precondition, signal.start.props):
                continue
            changed, before, after = seen
            streak = (signal.start.pid, name, result.invariant.id)
            if changed:
                self._unchanged.pop(streak, None)
                result.record_pass()
                continue
            self._unchanged[streak] += 1
            if self._unchanged[streak] < UNCHANGED_CALLS_LIMIT:
                continue
            self._unchanged.pop(streak)
            violation = call_violation(
                result,
                signal.start,
                what=f"{name} did not change in {UNCHANGED_CALLS_LIMIT} consecutive "
                f"{signal.api} calls",
                expected=f"{name} changes at every {signal.api}",
                observed=f"{name} unchanged since step "
                f"{signal.start.event.step - UNCHANGED_CALLS_LIMIT + 1} (grad {before.grad}, "
                f"requires_grad {after.requires_grad})",
                variables=(name,),
                events=(before, after),
            )
            violations.append(result.record_violation(violation))
        return violations

    def _never_observed(
        self, signal: CallRecord, name: str, result: InvariantResult[PeriodicParams]
    ) -> Violation | None:
        """The variable, updated from the first calls in the healthy runs, has been
        held by none of this process's calls so far: report it once, at the limit."""
        hint = self._first_update.get(result.invariant.id)
        pid = signal.start.pid
        if hint is None or not signal.pre or (pid, result.invariant.id) in self._observed:
            return None
        limit = max(UNCHANGED_CALLS_LIMIT, 2 * hint)
        if self._calls[(pid, signal.api)] != limit:
            return None
        if not holds(result.invariant.precondition, signal.start.props):
            return None
        return call_violation(
            result,
            signal.start,
            what=f"{name} was not updated by any of the first {limit} {signal.api} calls",
            expected=f"{name} changes at every {signal.api} from the start (in the healthy "
            f"runs a call held it within the first {hint})",
            observed=f"none of {limit} calls held {name}: no optimizer that steps has it",
            variables=(name,),
        )
