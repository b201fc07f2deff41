"""NumericRangeRelation (ours): the numbers a loop computes stay where healthy runs had them.

Every other relation is qualitative (digests, gradient states, call orders); a
loss that the gradient-accumulation loop forgot to divide, gradients left scaled
by a loss scaler, or a hand-written lr schedule applied to one param group only
change none of those: they change numbers, by a constant factor. Three kinds of
invariant, all about the scalars the tracer records (``traincheck/tracer/scalars.py``
and the optimizer's per-group settings):

- **magnitude** (``prop`` :data:`MAGNITUDE`, or :data:`RELATIVE` to the run's
  first value, see :data:`ABSOLUTE_VALUES`): the value of a tensor the training
  computed (the ``loss`` ``Tensor.backward`` was called on, the total norm
  ``clip_grad_norm_`` returned) stays below ``exp(log_high)``. The loss is
  bounded *at the first optimizer step only* (precondition ``step == 0``), before
  any update has acted: there it depends on the data and the initialisation,
  not on the lr, the schedule or how well the run happens to learn, so a healthy
  run with a smaller batch or a larger lr whose loss climbs for a while stays
  silent, and a loss not divided by the accumulation steps (or summed instead
  of averaged) is caught at the first backward. A relative value is bounded
  all through training. Never a lower bound:
  a loss or a gradient norm falls as training goes on, and a longer (or luckier)
  healthy run goes lower by an amount no healthy trace tells; twenty steps of a
  slowly learning model look flat and would give a floor the next run crosses.
  Numbers the user *passes* (an lr, a ``max_norm``) are configuration, not
  computed: they get no magnitude, since a healthy run with another ``--lr``
  would cross it.
- **group ratio** (``prop`` :data:`GROUP_RATIO`): a per-group optimizer setting
  ``X[i]`` keeps its ratio to group 0's ``X`` (``lr[1] / lr``). The ratio does not
  depend on the configured lr, only on how the schedule treats the groups: an lr
  written into ``param_groups[0]`` alone breaks it at the first step.
- **trajectory** (``prop`` :data:`CHANGE`, value :data:`CHANGED` or
  :data:`UNCHANGED`): an optimizer setting differs (or not) from its value at the
  same optimizer's previous step; and (value :data:`ONE_MORE`) a count the
  optimizer keeps (``state_step``, the steps its state says it took) is one more
  than at its previous step: an optimizer re-created on resume without its state
  dict (Adam's moments lost) restarts it at 0 while the training goes on.
  Positives and negatives go through precondition deduction with two-record
  properties, so "lr is unchanged when the epoch is the same in both records"
  (a per-epoch scheduler) and "lr changes at every step" (a per-step schedule)
  are both learnable; a scheduler never stepped, or
  stepped per batch, breaks one of them. Only the shape is claimed, never a value,
  and "unchanged" only where the healthy runs saw the setting change too.

Ranges are learned in log space from the ``train``-stage values of every process
of every input trace (one *series* each, in call order), with a margin that comes
from the data, not a constant:

    margin = spread of that extreme across series + 3 x step-to-step noise

(for the loss, the extreme of the values at the first optimizer step, with the
noise of the whole series: with one healthy run there is no spread across runs,
and the step-to-step noise stands for how far another seed or batch moves it),
where the noise is the largest, over series, median absolute change between
consecutive values (a batch of half the size doubles the variance of a loss; three
times the typical change lets an unseen run's extreme move that much). A side is
bounded only when no series drifts towards it (median of the last third past the
median of the first third by more than its noise): a series that rises gets no
upper bound, since a longer healthy run would cross it. A magnitude needs
positive, finite values in every series (a log range means nothing otherwise)
and at least :data:`MIN_SERIES_VALUES` values in some series. Checking: a value
outside the bounds (NaN always is) is a violation at its call, when the
precondition (``stage == 'train'``) holds.
"""

from __future__ import annotations

import itertools
import math
import statistics
from array import array
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from traincheck.analysis.calls import CallRecord, CallStart, Signal
from traincheck.analysis.invariants import APIParam, Hints, ValueParam, make_invariant
from traincheck.analysis.preconditions import (
    Clause,
    Precondition,
    Props,
    feature_key,
    holds,
    pair_props,
)
from traincheck.analysis.relations.base import (
    DEFAULT_SETTINGS,
    Collector,
    InferOutcome,
    InferSettings,
    InvariantResult,
    KeyedExamples,
    Rejection,
    Relation,
    RelationChecker,
    decide,
)
from traincheck.analysis.relations.call_violation import call_violation
from traincheck.analysis.relations.ordering import is_ordering_candidate
from traincheck.analysis.violations import Violation
from traincheck.catalogue import LOSS_ARG, OPTIMIZER_STEP
from traincheck.events import ArgValue

MAGNITUDE = "magnitude"
RELATIVE = "relative to first value"
ABSOLUTE_VALUES = frozenset({LOSS_ARG})
"""Computed values whose scale is the same in every healthy run: a loss is a mean
per sample (cross-entropy starts at ln C), whatever the batch size or the width.
Any other computed value (a gradient norm: its noise part goes as 1/sqrt(batch),
it grows with the parameter count) is judged against the same run's first value."""
GROUP_RATIO = "ratio to group 0"
CHANGE = "change since previous step"
IN_RANGE = "in range"
"""``ValueParam.value`` of a range: the bounds are the hints ``log_low``/``log_high``."""
CHANGED, UNCHANGED = "changed", "unchanged"
ONE_MORE = "one more"
"""Trajectory of a count: the value at the optimizer's previous step plus one."""
RANGE_PROPS = (MAGNITUDE, RELATIVE, GROUP_RATIO)
LOW, HIGH = "log_low", "log_high"

TRAIN_STAGE = "train"
MIN_SERIES_VALUES = 6
"""A series needs this many values for its trend and noise to mean anything."""
NOISE_MULTIPLE = 3.0
"""How many typical step-to-step changes an unseen run's extreme may move."""
FLOAT_TOLERANCE = 1e-6
"""Relative rounding a schedule's arithmetic may introduce (a ratio of 1 computed
as 0.9999999): the smallest margin, for series with no noise at all."""
BOUND_DIGITS = 6
NEVER_CHANGED = "never changed in the healthy runs (a schedule may not have started yet)"
"""Why "unchanged" needs a change seen: a StepLR or ReduceLROnPlateau whose first
change comes after the short healthy runs ended would make every longer healthy
run a violation. Where changes were seen, the precondition says when they happen."""

Slot = tuple[str, str, str, str]
"""(api, role, name, prop) of one range hypothesis."""
ChangeKey = tuple[str, str, str]
"""(api, argument, changed|unchanged|one more) of one trajectory hypothesis."""

STEP_PROP = "meta_vars.step"
FIRST_STEP = 0
"""The optimizer step before any update: where a loss is bounded."""
ONLY_IN_TRAINING = Precondition(((Clause("constant", "meta_vars.stage", "str", (TRAIN_STAGE,)),),))
AT_THE_FIRST_STEP = Precondition(
    (
        (
            Clause("constant", "meta_vars.stage", "str", (TRAIN_STAGE,)),
            Clause("constant", STEP_PROP, "int", (FIRST_STEP,)),
        ),
    )
)


class RangeParams(NamedTuple):
    """A number read at the calls of ``api``: ``value.name`` (an argument, or the
    ``result``) judged by ``value.prop``: its magnitude or group ratio within the
    hints' bounds (``value.value`` :data:`IN_RANGE`), or its change since the same
    optimizer's previous step (``value.value`` :data:`CHANGED` / :data:`UNCHANGED`)."""

    api: APIParam
    value: ValueParam


# -- reading numbers off calls ------------------------------------------------------------


def _number(arg: ArgValue) -> float | None:
    value = arg.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def computed_values(signal: Signal) -> Iterator[tuple[str, str, float]]:
    """(role, name, value) of the tensors with a value this signal carries: the
    arguments of a call start, the result of a returned call."""
    if isinstance(signal, CallStart):
        for arg in signal.event.args:
            if arg.kind == "tensor" and isinstance(arg.value, float):
                yield "input", arg.name, arg.value
        return
    ret = signal.ret
    if ret is not None and ret.result is not None and ret.result.kind == "tensor":
        if isinstance(ret.result.value, float):
            yield "output", ret.result.name, ret.result.value


def counts_of(start: CallStart) -> dict[str, int]:
    """The integer arguments of an optimizer step (``state_step``): counts it keeps."""
    return {
        arg.name: arg.value
        for arg in start.event.args
        if arg.kind == "int" and isinstance(arg.value, int) and not isinstance(arg.value, bool)
    }


def settings_of(start: CallStart) -> dict[str, float]:
    """The float settings of a call (an optimizer's ``lr``, ``lr[1]``, ``momentum``...)."""
    found: dict[str, float] = {}
    for arg in start.event.args:
        if arg.kind == "float":
            number = _number(arg)
            if number is not None:
                found[arg.name] = number
    return found


def group_ratios(settings: dict[str, float]) -> Iterator[tuple[str, float]]:
    """(``X[i]``, ``X[i] / X``) for every per-group setting whose group-0 twin is set."""
    for name, value in settings.items():
        base, bracket, _ = name.partition("[")
        first = settings.get(base) if bracket else None
        if first is not None and first != 0.0:
            yield name, value / first


def magnitude_prop(name: str) -> str:
    """How a computed value is judged: as it is, or against the run's first value."""
    return MAGNITUDE if name in ABSOLUTE_VALUES else RELATIVE


def log_of(value: float) -> float:
    """``log(value)``: -inf for zero and below, NaN for NaN (both judged by the bounds)."""
    if math.isnan(value):
        return math.nan
    return math.log(value) if value > 0 else -math.inf


# -- the series and their bounds ----------------------------------------------------------


@dataclass
class Bounds:
    """A learned range in log space; a side that is None is open."""

    low: float | None
    high: float | None

    def contains(self, log_value: float) -> bool:
        if math.isnan(log_value):
            return False
        if self.low is not None and log_value < self.low:
            return False
        return self.high is None or log_value <= self.high

    def hints(self) -> Hints:
        found: list[tuple[str, int | float]] = []
        if self.high is not None:
            found.append((HIGH, round(self.high, BOUND_DIGITS)))
        if self.low is not None:
            found.append((LOW, round(self.low, BOUND_DIGITS)))
        return tuple(sorted(found))


def _noise(series: Sequence[float]) -> float:
    """The median absolute change between consecutive values."""
    return statistics.median(abs(b - a) for a, b in itertools.pairwise(series))


def _drift(series: Sequence[float]) -> float:
    """Median of the last third minus median of the first third."""
    third = max(1, len(series) // 3)
    return statistics.median(series[-third:]) - statistics.median(series[:third])


def learn_bounds(all_series: Sequence[Sequence[float]], *, floor: bool = True) -> Bounds | str:
    """The bounds of log values seen in healthy series, or why there are none.

    ``floor=False`` leaves the low side open whatever the series do (magnitudes).
    """
    usable = [s for s in all_series if len(s) >= MIN_SERIES_VALUES]
    if not usable:
        return f"no series with {MIN_SERIES_VALUES} values"
    if any(not math.isfinite(v) for s in all_series for v in s):
        return "zero, negative or non-finite values (no log range)"
    noise = max(_noise(s) for s in usable)
    slack = NOISE_MULTIPLE * noise + FLOAT_TOLERANCE
    drifts = [_drift(s) - _noise(s) for s in usable], [-_drift(s) - _noise(s) for s in usable]
    rising, falling = (any(d > FLOAT_TOLERANCE for d in side) for side in drifts)
    highs = [max(s) for s in usable]
    lows = [min(s) for s in usable]
    high = None if rising else max(highs) + (max(highs) - min(highs)) + slack
    low = None if falling or not floor else min(lows) - (max(lows) - min(lows)) - slack
    if high is None and low is None:
        return "drifts both ways (no side to bound)"
    return Bounds(low, high)


def learn_start_bound(
    all_series: Sequence[Sequence[float]], starts: Sequence[Sequence[float]]
) -> Bounds | str:
    """The upper bound of the log values seen at the first optimizer step, or why
    there is none: the highest start, widened by the spread of the starts across
    series and 3 x the step-to-step noise of the whole series (the only measure
    of how far another seed or batch moves a value that one healthy run gives)."""
    usable = [s for s in all_series if len(s) >= MIN_SERIES_VALUES]
    if not usable:
        return f"no series with {MIN_SERIES_VALUES} values"
    if any(not math.isfinite(v) for s in all_series for v in s):
        return "zero, negative or non-finite values (no log range)"
    highs = [max(values) for values in starts if values]
    if not highs:
        return "no value at the first optimizer step"
    noise = max(_noise(s) for s in usable)
    slack = NOISE_MULTIPLE * noise + FLOAT_TOLERANCE
    return Bounds(None, max(highs) + (max(highs) - min(highs)) + slack)


# -- inference ----------------------------------------------------------------------------


@dataclass
class _Series:
    """Values per hypothesis and per (trace, process), in call order, and apart
    those of the first optimizer step.

    The bounds rest on medians of whole series, so every value is kept: as C doubles
    (8 bytes each, a list of floats takes 32), the same values to the bit."""

    values: dict[Slot, dict[tuple[int, int], array[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(_doubles))
    )
    starts: dict[Slot, dict[tuple[int, int], array[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(_doubles))
    )

    def add(self, slot: Slot, run: tuple[int, int], value: float, *, at_start: bool) -> None:
        self.values[slot][run].append(value)
        if at_start:
            self.starts[slot][run].append(value)


def _doubles() -> array[float]:
    return array("d")


class _RangeCollector(Collector):
    def __init__(self) -> None:
        self.series = _Series()
        self.changes = KeyedExamples[ChangeKey]()
        self._trace = -1
        self._previous = _PreviousSettings()

    def begin_trace(self) -> None:
        self._trace += 1
        self._previous = _PreviousSettings()

    def on_signal(self, signal: Signal) -> None:
        start = signal if isinstance(signal, CallStart) else signal.start
        if (
            not is_ordering_candidate(start.api)
            or start.props.get("meta_vars.stage") != TRAIN_STAGE
        ):
            return
        run = (self._trace, start.pid)
        at_start = start.props.get(STEP_PROP) == FIRST_STEP
        for role, name, value in computed_values(signal):
            slot = (start.api, role, name, magnitude_prop(name))
            self.series.add(slot, run, log_of(value), at_start=at_start)
        if not isinstance(signal, CallStart) or start.api != OPTIMIZER_STEP:
            return
        settings = settings_of(signal)
        for name, ratio in group_ratios(settings):
            self.series.add(
                (start.api, "input", name, GROUP_RATIO), run, log_of(ratio), at_start=at_start
            )
        for change in self._previous.compare(signal, settings, counts_of(signal)):
            key = feature_key(change.props)
            if change.is_count:
                self.changes.add((start.api, change.name, ONE_MORE), key, change.one_more)
                continue
            self.changes.add((start.api, change.name, CHANGED), key, change.changed)
            self.changes.add((start.api, change.name, UNCHANGED), key, not change.changed)


class SettingChange(NamedTuple):
    """One setting (or count) of an optimizer step against the same optimizer's previous step."""

    name: str
    before: float
    now: float
    props: Props
    is_count: bool

    @property
    def changed(self) -> bool:
        return self.now != self.before

    @property
    def one_more(self) -> bool:
        return self.now == self.before + 1


@dataclass
class _PreviousSettings:
    """The settings and counts of each optimizer's previous step (per process,
    thread, optimizer class), shared by inference and checking."""

    _last: dict[tuple[int, int, str], tuple[dict[str, float], dict[str, int], Props]] = field(
        default_factory=dict
    )

    def compare(
        self, start: CallStart, settings: dict[str, float], counts: dict[str, int]
    ) -> list[SettingChange]:
        """Each setting and count present at both steps, with the two-record properties."""
        optimizer = next((a.value for a in start.event.args if a.name == "optimizer"), "")
        # Optimizers are told apart by class and number of settings (no object ids
        # in the trace): a GAN's two optimizers usually differ in one of them.
        key = (start.pid, start.thread, f"{optimizer}/{len(settings)}")
        previous = self._last.get(key)
        self._last[key] = (settings, counts, start.props)
        if previous is None:
            return []
        settings_before, counts_before, before_props = previous
        props = pair_props(start.props, before_props)
        changes = [
            SettingChange(name, settings_before[name], value, props, False)
            for name, value in sorted(settings.items())
            if name in settings_before
        ]
        changes.extend(
            SettingChange(name, counts_before[name], value, props, True)
            for name, value in sorted(counts.items())
            if name in counts_before
        )
        return changes


class NumericRangeRelation(Relation[RangeParams, _RangeCollector]):
    name = "NumericRangeRelation"
    group = "pre_event"
    params_type = RangeParams

    def new_collector(self) -> _RangeCollector:
        return _RangeCollector()

    def infer(
        self, collector: _RangeCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        for slot in sorted(collector.series.values):
            api, role, name, prop = slot
            params = RangeParams(APIParam(api), ValueParam(role, name, prop, IN_RANGE))
            runs = collector.series.values[slot]
            series: list[Sequence[float]] = [runs[run] for run in sorted(runs)]
            if prop == RELATIVE:
                series = [[v - s[0] for v in s] for s in series]
            if prop == MAGNITUDE:
                starts = collector.series.starts[slot]
                bounds = learn_start_bound(series, [starts[run] for run in sorted(starts)])
            else:
                bounds = learn_bounds(series, floor=prop == GROUP_RATIO)
            count = sum(len(values) for values in runs.values())
            if isinstance(bounds, str):
                outcome.rejections.append(
                    Rejection(self.name, self.describe(params), bounds, count, 0)
                )
                continue
            self._decide_range(params, bounds, count, outcome)
        for (api, name, value), examples in collector.changes.in_order():
            params = RangeParams(APIParam(api), ValueParam("input", name, CHANGE, value))
            if value == UNCHANGED and examples.num_negative == 0:
                outcome.rejections.append(
                    Rejection(self.name, self.describe(params), NEVER_CHANGED, 0, 0)
                )
                continue
            decide(self, params, examples, outcome)
        return outcome

    def _decide_range(
        self, params: RangeParams, bounds: Bounds, count: int, outcome: InferOutcome
    ) -> None:
        hints = bounds.hints()
        at_start = params.value.prop == MAGNITUDE
        outcome.invariants.append(
            make_invariant(
                self.name,
                params,
                AT_THE_FIRST_STEP if at_start else ONLY_IN_TRAINING,
                group=self.group,
                text_description=_range_text(params, hints),
                num_positive_examples=count,
                num_negative_examples=0,
                hints=hints,
            )
        )

    def new_checker(self, results: Sequence[InvariantResult[RangeParams]]) -> RelationChecker:
        return _RangeChecker(results)

    def params_problem(self, params: RangeParams) -> str | None:
        value = params.value
        if value.prop in RANGE_PROPS and value.value == IN_RANGE:
            if value.prop == GROUP_RATIO and value.role != "input":
                return "a group ratio is about an input (a per-group setting)"
            return None
        if value.prop == CHANGE and value.value in (CHANGED, UNCHANGED, ONE_MORE):
            return None if value.role == "input" else "a change is about an input setting"
        return (
            f"the ValueParam must have prop {MAGNITUDE!r}, {RELATIVE!r} or {GROUP_RATIO!r} "
            "with value "
            f"{IN_RANGE!r}, or prop {CHANGE!r} with value {CHANGED!r}, {UNCHANGED!r} "
            f"or {ONE_MORE!r}"
        )

    def describe(self, params: RangeParams) -> str:
        return _range_text(params, ())


def _subject(params: RangeParams) -> str:
    api, value = params
    what = value.name if value.role == "input" else f"the returned {value.name}"
    if value.prop == GROUP_RATIO:
        what = f"{value.name} / {value.name.partition('[')[0]}"
    elif value.prop == RELATIVE:
        what = f"{what} / its first value in the run"
    return f"{api.api_full_name}: {what}"


def _range_text(params: RangeParams, hints: Hints) -> str:
    value = params.value
    if value.prop == CHANGE:
        verbs = {CHANGED: "differs from", UNCHANGED: "equals"}
        verb = verbs.get(str(value.value), "is one more than")
        return f"{_subject(params)} {verb} its value at the optimizer's previous step"
    found = dict(hints)
    when = " at the first optimizer step" if value.prop == MAGNITUDE else ""
    return f"{_subject(params)} stays {_bounds_text(found.get(LOW), found.get(HIGH))}{when}"


def _bounds_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"within [{math.exp(low):.4g}, {math.exp(high):.4g}]"
    if high is not None:
        return f"at most {math.exp(high):.4g}"
    if low is not None:
        return f"at least {math.exp(low):.4g}"
    return "within the range seen in healthy runs"


# -- checking -----------------------------------------------------------------------------


class _RangeChecker(RelationChecker):
    def __init__(self, results: Sequence[InvariantResult[RangeParams]]) -> None:
        self._ranges: dict[Slot, list[tuple[InvariantResult[RangeParams], Bounds]]] = defaultdict(
            list
        )
        self._changes: dict[tuple[str, str], list[InvariantResult[RangeParams]]] = defaultdict(list)
        for result in results:
            api, value = result.invariant.params
            if value.prop == CHANGE:
                self._changes[(api.api_full_name, value.name)].append(result)
                continue
            inv = result.invariant
            bounds = Bounds(inv.number_hint(LOW), inv.number_hint(HIGH))
            slot = (api.api_full_name, value.role, value.name, value.prop)
            self._ranges[slot].append((result, bounds))
        self._apis = {slot[0] for slot in self._ranges} | {api for api, _ in self._changes}
        self._previous = _PreviousSettings()
        self._first: dict[tuple[int, str, str, str], float] = {}
        """The first training-stage log value of each relative slot, per process."""

    def on_signal(self, signal: Signal) -> list[Violation]:
        start = signal if isinstance(signal, CallStart) else signal.start
        if start.api not in self._apis:
            return []
        found = [
            self._judged(start, role, name, value) for role, name, value in computed_values(signal)
        ]
        violations: list[Violation] = []
        if isinstance(signal, CallStart):
            settings = settings_of(signal)
            found.extend(
                ("input", name, GROUP_RATIO, f"{ratio:.4g}", log_of(ratio))
                for name, ratio in group_ratios(settings)
            )
            if self._changes:
                violations.extend(self._check_changes(signal, settings, counts_of(signal)))
        for role, name, prop, shown, log_value in found:
            for result, bounds in self._ranges.get((start.api, role, name, prop), ()):
                if not holds(result.invariant.precondition, start.props):
                    continue
                if bounds.contains(log_value):
                    result.record_pass()
                    continue
                observed = f"{_subject(result.invariant.params)} = {shown}"
                violation = call_violation(
                    result,
                    start,
                    what=f"{observed}, outside the range of the healthy runs",
                    expected=result.invariant.text_description,
                    observed=observed,
                    events=(signal.ret,) if isinstance(signal, CallRecord) and signal.ret else (),
                    symptom=prop != GROUP_RATIO,
                )
                violations.append(result.record_violation(violation))
        return violations

    def _judged(
        self, start: CallStart, role: str, name: str, value: float
    ) -> tuple[str, str, str, str, float]:
        """(role, name, prop, value as shown, log value judged) of one computed value."""
        prop, log_value = magnitude_prop(name), log_of(value)
        shown = f"{value:.4g}"
        if prop == RELATIVE and start.props.get("meta_vars.stage") == TRAIN_STAGE:
            first = self._first.setdefault((start.pid, start.api, role, name), log_value)
            log_value -= first
            if math.isfinite(log_value):
                shown = f"{math.exp(log_value):.4g} ({name} = {value:.4g})"
            else:  # a first value of 0 (no gradient yet): no ratio to speak of
                shown = f"undefined ({name} = {value:.4g}, first {math.exp(first):.4g})"
        return role, name, prop, shown, log_value

    def _check_changes(
        self, start: CallStart, settings: dict[str, float], counts: dict[str, int]
    ) -> list[Violation]:
        violations = []
        for change in self._previous.compare(start, settings, counts):
            for result in self._changes.get((start.api, change.name), ()):
                expected = result.invariant.params.value.value
                if (expected == ONE_MORE) != change.is_count:
                    continue
                if not holds(result.invariant.precondition, change.props):
                    continue
                if _as_expected(change, expected):
                    result.record_pass()
                    continue
                how = _how_it_moved(change)
                precondition = result.invariant.precondition
                violation = call_violation(
                    result,
                    start,
                    what=f"{start.api}: {change.name} {how} since the optimizer's previous step",
                    expected=result.invariant.text_description
                    + (f" when {precondition.describe()}" if precondition else ""),
                    observed=f"{change.name} = {change.now:.4g}, {how}",
                )
                violations.append(result.record_violation(violation))
        return violations


def _as_expected(change: SettingChange, expected: object) -> bool:
    if expected == ONE_MORE:
        return change.one_more
    return change.changed == (expected == CHANGED)


def _how_it_moved(change: SettingChange) -> str:
    if change.is_count:
        return f"went from {change.before:.4g} to {change.now:.4g}"
    return "changed" if change.changed else "did not change"
