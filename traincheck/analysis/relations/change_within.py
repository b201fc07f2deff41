"""ChangeWithinRelation (ours): a variable's content changes only within calls of one API.

``torch.nn.Parameter.data changes only within torch.optim.Optimizer.step``: the
converse of APIContain's "step changes the parameters". Catches a parameter
overwritten where training never writes it: EMA weights copied into the model
for validation and never restored (training continues from the average), a
checkpoint loaded over the model mid-run, a hand-written update beside the
optimizer. Each step still changes the parameters and every call runs in its
usual order, so no other relation sees it.

Examples are changes, seen as two consecutive observations of a variable whose
digests differ (:mod:`change_windows`: the traced calls that overlapped the
window between them are the candidates). A window without a change says nothing
(a frozen parameter, an accumulation micro-batch, an EMA swapped in and restored
between two steps) and is no example. The hypothesis for a variable type is the
API whose calls bracketed most of its changes (the change was seen from the
pre to the post state of one call of it), e.g. ``Optimizer.step`` for parameters
and ``Module.__call__`` for BatchNorm's running statistics; a change is positive
when a call of that API overlapped its window. A nested call counts as within
(Lightning runs forward and backward inside ``Optimizer.step``; Accelerate's
``AcceleratedOptimizer.step`` runs torch's), and so do sparse observations: a
change across a window that holds a step is explained, whatever else ran there.

Guards: one example per (observing call, variable type, window), so a model's
hundred parameters changed by one step count once; windows over unrecorded steps
(a sampled trace) are unknown (:mod:`change_windows`); set-up (stage ``init``:
initialisation, a checkpoint loaded before training) is neither learned from nor
judged; a healthy run whose changes the API does not all explain gets the
precondition deduction separates them by (e.g. ``stage == 'train'``), or no
invariant.

In the file: ``[APIParam X, VarTypeParam{var_type, attr_name: data, pre_value:
"anything", post_value: "changed"}]``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Final, NamedTuple

from traincheck.analysis.calls import CallRecord, Signal
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
)
from traincheck.analysis.relations.call_violation import call_violation
from traincheck.analysis.relations.change_windows import ChangeWindows, VarChange, Window
from traincheck.analysis.var_attrs import ANYTHING, CHANGED, DATA
from traincheck.analysis.violations import Violation
from traincheck.catalogue import CONTENT_WRITERS

MAX_NAMES_SHOWN: Final = 3
MAX_APIS_SHOWN: Final = 6


class ChangeWithinParams(NamedTuple):
    """Every change of ``var``'s content lies within a call of ``api``."""

    api: APIParam
    var: VarTypeParam


_ExampleKey = tuple[FeatureKey, frozenset[str], str | None]
"""(properties of the observing call, APIs overlapping the window, bracketing API)."""


class _ChangeCollector(Collector):
    def __init__(self) -> None:
        self.windows = ChangeWindows()
        self.changes: dict[str, Counter[_ExampleKey]] = defaultdict(Counter)
        """var type -> its changes, folded by example key."""

    def begin_trace(self) -> None:
        self.windows.reset()

    def on_signal(self, signal: Signal) -> None:
        changes = self.windows.feed(signal)
        if not changes or not isinstance(signal, CallRecord):
            return
        key = feature_key(signal.start.props)
        seen: set[tuple[str, frozenset[str], str | None]] = set()
        for change in changes:
            window = change.window
            folded = (change.var_type, window.apis, window.bracket)
            if folded not in seen:
                seen.add(folded)
                self.changes[change.var_type][(key, window.apis, window.bracket)] += 1


class ChangeWithinRelation(Relation[ChangeWithinParams, _ChangeCollector]):
    name = "ChangeWithinRelation"
    group = "change_within"
    params_type = ChangeWithinParams
    var_attrs = (DATA,)

    def new_collector(self) -> _ChangeCollector:
        return _ChangeCollector()

    def infer(
        self, collector: _ChangeCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        for var_type in sorted(collector.changes):
            changes = collector.changes[var_type]
            api = _bracketing_api(changes)
            examples = Examples()
            for (key, apis, _), count in changes.items():
                (examples.positives if api in apis else examples.negatives)[key] += count
            params = ChangeWithinParams(
                APIParam(api), VarTypeParam(var_type, DATA, ANYTHING, CHANGED)
            )
            decide(self, params, examples, outcome)
        return outcome

    def new_checker(
        self, results: Sequence[InvariantResult[ChangeWithinParams]]
    ) -> RelationChecker:
        return _ChangeChecker(results)

    def params_problem(self, params: ChangeWithinParams) -> str | None:
        if (params.var.pre_value, params.var.post_value) != (ANYTHING, CHANGED):
            return f"the variable's values must be {ANYTHING!r} -> {CHANGED!r}"
        return None

    def describe(self, params: ChangeWithinParams) -> str:
        var = params.var
        return f"{var.var_type}.{var.attr_name} changes only within {params.api.api_full_name}"


def _bracketing_api(changes: Counter[_ExampleKey]) -> str:
    """The API whose calls bracketed most changes; else the one whose calls overlapped
    most change windows (ties: the name sorting first, independent of trace order)."""
    bracketed: Counter[str] = Counter()
    overlapped: Counter[str] = Counter()
    for (_, apis, bracket), count in changes.items():
        if bracket is not None:
            bracketed[bracket] += count
        for api in apis:
            overlapped[api] += count
    return min(overlapped, key=lambda api: (-bracketed[api], -overlapped[api], api))


class _ChangeChecker(RelationChecker):
    def __init__(self, results: Sequence[InvariantResult[ChangeWithinParams]]) -> None:
        self._by_type: dict[str, list[InvariantResult[ChangeWithinParams]]] = defaultdict(list)
        for result in results:
            self._by_type[result.invariant.params.var.var_type].append(result)
        self._windows = ChangeWindows(frozenset(self._by_type))

    def on_signal(self, signal: Signal) -> list[Violation]:
        changes = self._windows.feed(signal)
        if not changes or not isinstance(signal, CallRecord):
            return []
        violations = []
        for var_type, results in self._by_type.items():
            typed = [c for c in changes if c.var_type == var_type]
            if not typed:
                continue
            for result in results:
                if not holds(result.invariant.precondition, signal.start.props):
                    continue
                api = result.invariant.params.api.api_full_name
                unexplained = [c for c in typed if api not in c.window.apis]
                if not unexplained:
                    result.record_pass()
                    continue
                violation = _violation(result, signal, api, unexplained)
                violations.append(result.record_violation(violation))
        return violations


def _violation(
    result: InvariantResult[ChangeWithinParams],
    record: CallRecord,
    api: str,
    changes: list[VarChange],
) -> Violation:
    first = changes[0]
    names = sorted({c.name for c in changes})
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    if len(names) > MAX_NAMES_SHOWN:
        shown += f" and {len(names) - MAX_NAMES_SHOWN} more"
    window = first.window
    writers = [a for a, _ in window.counts if a in CONTENT_WRITERS]
    var = result.invariant.params.var
    return call_violation(
        result,
        record.start,
        what=f"{shown} changed outside {api}: between {_point(first, before=True)} "
        f"and {_point(first, before=False)}",
        expected=f"{var.var_type}.{var.attr_name} changes only within {api} "
        "(as every change in the healthy runs did)",
        observed=f"content digest changed with no {api} call in between; "
        f"traced calls there: {_calls_text(window)}",
        apis=(api, *writers),
        variables=tuple(names),
        events=(first.before, first.after, *reversed(window.suspects)),
    )


def _point(change: VarChange, *, before: bool) -> str:
    """Where an observation was taken, in words: ``the end of torch.optim.Optimizer.step at
    step 3``."""
    state = change.before if before else change.after
    api = change.before_api if before else change.after_api
    word = "the start" if state.phase == "pre" else "the end"
    return f"{word} of {api} at step {state.step}"


def _calls_text(window: Window) -> str:
    """The calls started in the window, per API: content writers first, then by first call."""
    if not window.counts:
        return "none"
    counts = sorted(window.counts, key=lambda item: item[0] not in CONTENT_WRITERS)
    parts = [f"{api} x{n}" for api, n in counts[:MAX_APIS_SHOWN]]
    if len(window.counts) > MAX_APIS_SHOWN:
        parts.append(f"{len(window.counts) - MAX_APIS_SHOWN} more APIs")
    return ", ".join(parts)
