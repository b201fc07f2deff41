"""SingleUpdateRelation (ours): a variable is changed by at most one U call between two R calls.

``each torch.nn.Parameter.data is changed by at most one torch.optim.Optimizer.step
between two torch.Tensor.backward calls``. Catches the *double update*: a
parameter handed to two optimizers (``SGD(model.parameters())`` next to
``Adam(model.head.parameters())``) is stepped twice on one gradient, with no
error and a loss that still falls. No relation of the published tool sees it:
every step still changes parameters, and the call order is unchanged.

Mechanics, per process: outermost calls are numbered; for every variable we keep
the number of the U call that last changed it. A U call that changes variables
whose previous changes were at numbers ``c_v`` is judged against R: R must have
been called after ``max(c_v)``. A U call that changes only variables never
changed before is no example (nothing to compare with). Hypotheses: every U that
changes ``data`` of some type, against every outermost R called often enough.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from traincheck.analysis.calls import CallRecord, CallStart, Signal
from traincheck.analysis.invariants import APIParam, Invariant, VarTypeParam
from traincheck.analysis.preconditions import (
    FIRST_MICRO_BATCH,
    MICRO_BATCH,
    FeatureKey,
    feature_key,
    holds,
)
from traincheck.analysis.relations.base import (
    DEFAULT_SETTINGS,
    IMPLIED,
    Collector,
    Examples,
    InferOutcome,
    InferSettings,
    InvariantResult,
    Rejection,
    Relation,
    RelationChecker,
    decide,
    results_by_api,
)
from traincheck.analysis.relations.call_violation import call_violation
from traincheck.analysis.relations.ordering import (
    MIN_API_CALLS,
    is_ordering_candidate,
    outermost_call,
)
from traincheck.analysis.var_attrs import ANYTHING, CHANGED, DATA
from traincheck.analysis.violations import Violation


class SingleUpdateParams(NamedTuple):
    """Each variable of ``var.var_type`` is changed by at most one ``api`` call between
    two ``reset`` calls."""

    api: APIParam
    var: VarTypeParam
    reset: APIParam


@dataclass
class _ProcessOrder:
    """Numbered outermost calls and the last change of every variable, in one process."""

    counter: int = 0
    last_index: dict[str, int] = field(default_factory=dict)
    call_index: dict[int, int] = field(default_factory=dict)
    last_change: dict[str, int] = field(default_factory=dict)
    first_micro_batch_change: dict[str, int] = field(default_factory=dict)
    """The last change of every variable by a call on a step's first micro-batch: what an
    invariant confined to first micro-batches compares with. Under gradient
    accumulation the forward of every later micro-batch changes BatchNorm's buffers
    again before the optimizer step; such an invariant never saw those forwards and
    does not judge them, so they must not count as the previous change either."""

    def on_start(self, start: CallStart) -> None:
        if outermost_call(start) is not None:
            self.counter += 1
            self.last_index[start.api] = self.counter
        self.call_index[start.event.call_id] = self.counter

    def changed_vars(self, record: CallRecord) -> dict[str, list[str]]:
        """Names of the variables whose content the call changed, per variable type."""
        changed: dict[str, list[str]] = defaultdict(list)
        for name, before in record.pre.items():
            after = record.post.get(name)
            if after is None or before.digest is None or after.digest is None:
                continue
            if before.digest != after.digest:
                changed[before.var_type].append(name)
        return changed

    def previous_change(
        self, names: list[str], *, first_micro_batch: bool = False
    ) -> tuple[int, str] | None:
        """The latest earlier change among ``names`` (index, variable), if any; with
        ``first_micro_batch``, only changes by calls on a step's first micro-batch."""
        changes = self.first_micro_batch_change if first_micro_batch else self.last_change
        seen = [(changes[n], n) for n in names if n in changes]
        return max(seen) if seen else None

    def called_after(self, index: int) -> frozenset[str]:
        return frozenset(a for a, i in self.last_index.items() if i > index)

    def finish_call(self, record: CallRecord, names: list[str]) -> None:
        index = self.call_index.pop(record.start.event.call_id, self.counter)
        first = record.start.props.get(MICRO_BATCH, 0) == 0
        for name in names:
            self.last_change[name] = index
            if first:
                self.first_micro_batch_change[name] = index


class _SingleUpdateCollector(Collector):
    def __init__(self) -> None:
        self.updates: Counter[tuple[str, str, FeatureKey, frozenset[str]]] = Counter()
        self.calls: Counter[str] = Counter()
        self._procs: dict[int, _ProcessOrder] = {}

    def begin_trace(self) -> None:
        self._procs.clear()

    def on_signal(self, signal: Signal) -> None:
        start = signal.start if isinstance(signal, CallRecord) else signal
        proc = self._procs.setdefault(start.pid, _ProcessOrder())
        if isinstance(signal, CallStart):
            proc.on_start(signal)
            if outermost_call(signal) is not None:
                self.calls[signal.api] += 1
            return
        changed = proc.changed_vars(signal)
        all_names = [n for names in changed.values() for n in names]
        for var_type, names in sorted(changed.items()):
            previous = proc.previous_change(names)
            if previous is not None:
                window = proc.called_after(previous[0])
                key = feature_key(signal.start.props)
                self.updates[(signal.api, var_type, key, window)] += 1
        proc.finish_call(signal, all_names)


class SingleUpdateRelation(Relation[SingleUpdateParams, _SingleUpdateCollector]):
    name = "SingleUpdateRelation"
    group = "update_call_pre"
    params_type = SingleUpdateParams

    def new_collector(self) -> _SingleUpdateCollector:
        return _SingleUpdateCollector()

    def infer(
        self, collector: _SingleUpdateCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        updaters = sorted({(api, var_type) for api, var_type, _, _ in collector.updates})
        resets = sorted(
            a for a, n in collector.calls.items() if n >= MIN_API_CALLS and is_ordering_candidate(a)
        )
        for api, var_type in updaters:
            for reset in resets:
                if reset == api:
                    continue
                examples = Examples()
                for (u, t, key, window), count in collector.updates.items():
                    if (u, t) == (api, var_type):
                        target = examples.positives if reset in window else examples.negatives
                        target[key] += count
                params = SingleUpdateParams(
                    APIParam(api),
                    VarTypeParam(var_type, DATA, ANYTHING, CHANGED),
                    APIParam(reset),
                )
                decide(self, params, examples, outcome)
        _keep_strongest(self, outcome, collector.calls)
        return outcome

    def new_checker(
        self, results: Sequence[InvariantResult[SingleUpdateParams]]
    ) -> RelationChecker:
        return _SingleUpdateChecker(results)

    def describe(self, params: SingleUpdateParams) -> str:
        api, var, reset = params
        return (
            f"each {var.var_type}.{var.attr_name} is changed by at most one "
            f"{api.api_full_name} between two {reset.api_full_name} calls"
        )


def _keep_strongest(
    relation: SingleUpdateRelation, outcome: InferOutcome, calls: Counter[str]
) -> None:
    """Of the invariants on one (U, type, precondition), keep the one with the rarest R.

    With one backward, one forward and one zero_grad per iteration the three
    invariants "at most one U between two R" say the same thing three times, and
    a double update would fire all three. The rarest R makes the widest windows,
    so its invariant is the strongest (under gradient accumulation, zero_grad
    rather than backward); ties go to the API name, so the choice is deterministic.
    The others are recorded as rejections, implied by the one kept.
    """
    best: dict[tuple[str, str], Invariant[SingleUpdateParams]] = {}
    for inv in outcome.invariants:
        group = (json.dumps([p.to_json() for p in inv.params[:2]]), repr(inv.precondition))
        if group not in best or _strength(inv, calls) < _strength(best[group], calls):
            best[group] = inv
    kept = set(map(id, best.values()))
    for inv in outcome.invariants:
        if id(inv) not in kept:
            outcome.rejections.append(
                Rejection(
                    relation.name,
                    inv.text_description,
                    IMPLIED,
                    inv.num_positive_examples,
                    inv.num_negative_examples,
                )
            )
    outcome.invariants = [inv for inv in outcome.invariants if id(inv) in kept]


def _strength(inv: Invariant[SingleUpdateParams], calls: Counter[str]) -> tuple[int, str]:
    reset = inv.params.reset
    return (calls[reset.api_full_name], reset.api_full_name)


class _SingleUpdateChecker(RelationChecker):
    def __init__(self, results: Sequence[InvariantResult[SingleUpdateParams]]) -> None:
        self._by_api = results_by_api(results)
        self._procs: dict[int, _ProcessOrder] = {}

    def on_signal(self, signal: Signal) -> list[Violation]:
        if isinstance(signal, CallStart):
            self._procs.setdefault(signal.pid, _ProcessOrder()).on_start(signal)
            return []
        proc = self._procs.setdefault(signal.start.pid, _ProcessOrder())
        if signal.api not in self._by_api:
            proc.call_index.pop(signal.start.event.call_id, None)
            return []
        changed = proc.changed_vars(signal)
        violations = []
        for result in self._by_api[signal.api]:
            _, var, reset = result.invariant.params
            precondition = result.invariant.precondition
            first_only = precondition is not None and FIRST_MICRO_BATCH in precondition.context
            previous = proc.previous_change(
                changed.get(var.var_type, []), first_micro_batch=first_only
            )
            if previous is None or not holds(result.invariant.precondition, signal.start.props):
                continue
            if proc.last_index.get(reset.api_full_name, 0) > previous[0]:
                result.record_pass()
                continue
            names = changed[var.var_type]
            violation = _violation(result, signal, var, reset, names, proc)
            violations.append(result.record_violation(violation))
        proc.finish_call(signal, [n for names in changed.values() for n in names])
        return violations


def _violation(
    result: InvariantResult[SingleUpdateParams],
    record: CallRecord,
    var: VarTypeParam,
    reset: APIParam,
    names: list[str],
    proc: _ProcessOrder,
) -> Violation:
    reset_at = proc.last_index.get(reset.api_full_name, 0)
    twice = sorted(n for n in names if proc.last_change.get(n, -1) > reset_at)
    shown = ", ".join(twice[:4]) + (f" and {len(twice) - 4} more" if len(twice) > 4 else "")
    return call_violation(
        result,
        record.start,
        what=f"{record.api} changed {shown} a second time without a "
        f"{reset.api_full_name} in between",
        expected=f"each {var.var_type}.{var.attr_name} is changed by at most one "
        f"{record.api} between two {reset.api_full_name} calls",
        observed=f"{len(twice)} variables updated twice (e.g. by two optimizers holding them)",
        apis=(record.api, reset.api_full_name),
        variables=tuple(twice),
        events=tuple(s for n in twice[:4] for s in (record.pre[n], record.post[n])),
    )
