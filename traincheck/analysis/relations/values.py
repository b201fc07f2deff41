"""Shared machinery of the value relations (ConsistentInput, ConsistentOutput).

A call's *value properties* are what a relation can require of one input
argument or of the result:

- a bool or string argument: its value (``training``, ``set_to_none``, the
  optimizer class);
- a tensor (argument or result): ``dtype``, ``device``, ``requires_grad``.

Numbers are left out on purpose: a learning rate, a batch size or a shape is
run configuration, differs between healthy runs, and an invariant on it would
alarm on the next healthy run with another configuration. What a number may be
judged by is whether it is **zero** (prop :data:`ZERO`), and only where that
depends on the program's mode: a dropout probability passed as
``dropout_p=self.p if self.training else 0.0`` is zero in evaluation and not in
training, whatever ``p`` a run configures. The hypothesis is "X is zero", its
examples are keyed by the stage alone, and it is considered only where the
healthy runs passed X both as zero and not: a number that is zero everywhere (or
nowhere) is configuration like any other (a weight decay of 0, a warm-up that
starts at lr 0), and its context would be the step or the schedule, not the mode.

Hypothesis: "property P of API F is always V" for every value V observed.
Examples are calls of F that have the property (a call without it is no example):
positive when it equals V. For inputs, the argument's own ``args.<name>``
property is removed from the example's properties, so the precondition cannot
be the invariant restated. So are the run-length counters (``step``, ``epoch``):
a value met only at the first iteration is a loop boundary short runs cannot
date (:func:`~traincheck.analysis.preconditions.without_run_counters`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from traincheck.analysis.calls import CallRecord, CallStart, Signal
from traincheck.analysis.invariants import APIParam, ValueParam
from traincheck.analysis.preconditions import (
    FeatureKey,
    Scalar,
    dtype_of,
    feature_key,
    holds,
    without_run_counters,
)
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
from traincheck.analysis.relations.ordering import is_ordering_candidate
from traincheck.analysis.violations import Violation
from traincheck.events import ArgValue

TENSOR_PROPS = ("dtype", "device", "requires_grad")
SCALAR_DTYPES = ("bool", "str")
NUMBER_DTYPES = ("int", "float")
ZERO = "zero"
"""The one property of a number: whether it is zero (a switch turned off)."""
STAGE = "meta_vars.stage"

Slot = tuple[str, str, str]
"""(role, name, prop) of a value property."""


class ValueParams(NamedTuple):
    """At every call of ``api``, the property ``value`` names has the value it holds."""

    api: APIParam
    value: ValueParam


def arg_properties(arg: ArgValue) -> Iterator[tuple[str, Scalar]]:
    """(prop, value) pairs a relation may require of one argument or result."""
    if arg.kind == "tensor":
        for prop in TENSOR_PROPS:
            value = getattr(arg, prop)
            if value is not None:
                yield prop, value
    elif dtype_of(arg.value) in SCALAR_DTYPES:
        yield "value", arg.value  # type: ignore[misc]
    elif dtype_of(arg.value) in NUMBER_DTYPES:
        yield ZERO, arg.value == 0


def input_properties(start: CallStart) -> Iterator[tuple[Slot, Scalar]]:
    for arg in start.event.args:
        for prop, value in arg_properties(arg):
            yield ("input", arg.name, prop), value


def output_properties(record: CallRecord) -> Iterator[tuple[Slot, Scalar]]:
    if record.ret is None or record.ret.result is None or record.ret.exception:
        return
    for prop, value in arg_properties(record.ret.result):
        yield ("output", "output", prop), value


def _props_without(start: CallStart, slot: Slot) -> dict[str, Scalar]:
    props = dict(start.props)
    if slot[0] == "input":
        props.pop(f"args.{slot[1]}", None)
    return props


class ValueCollector(Collector):
    """Counts, per (API, slot), the calls with each value, keyed by their context."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.values: dict[tuple[str, Slot], Counter[tuple[FeatureKey, Scalar]]] = defaultdict(
            Counter
        )

    def on_signal(self, signal: Signal) -> None:
        found = _observed(signal, self.role)
        if found is None:
            return
        start, pairs = found
        if not is_ordering_candidate(start.api):
            return
        for slot, value in pairs:
            if slot[2] == ZERO:
                props = _mode_of(start)
            else:
                props = without_run_counters(_props_without(start, slot))
            self.values[(start.api, slot)][(feature_key(props), value)] += 1


def _mode_of(start: CallStart) -> dict[str, Scalar]:
    """The only context a number's zero is learned in: the stage."""
    stage = start.props.get(STAGE)
    return {} if stage is None else {STAGE: stage}


def _observed(signal: Signal, role: str) -> tuple[CallStart, list[tuple[Slot, Scalar]]] | None:
    if role == "input" and isinstance(signal, CallStart):
        return signal, list(input_properties(signal))
    if role == "output" and isinstance(signal, CallRecord):
        return signal.start, list(output_properties(signal))
    return None


class ValueRelation(Relation[ValueParams, ValueCollector]):
    """ "P of F is always V" for inputs or outputs; subclasses set ``role``."""

    role: str
    params_type = ValueParams

    def new_collector(self) -> ValueCollector:
        return ValueCollector(self.role)

    def infer(
        self, collector: ValueCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        for api, slot in sorted(collector.values):
            seen = collector.values[(api, slot)]
            values = {v for _, v in seen}
            if slot[2] == ZERO:
                values = {True} if values == {True, False} else set()
            for value in sorted(values, key=repr):
                examples = Examples()
                for (key, v), count in seen.items():
                    (examples.positives if v == value else examples.negatives)[key] += count
                params = ValueParams(APIParam(api), ValueParam(*slot, value))
                decide(self, params, examples, outcome)
        return outcome

    def new_checker(self, results: Sequence[InvariantResult[ValueParams]]) -> RelationChecker:
        return ValueChecker(self.role, results)

    def params_problem(self, params: ValueParams) -> str | None:
        if params.value.role != self.role:
            return f"the ValueParam's role must be {self.role!r}"
        return None

    def describe(self, params: ValueParams) -> str:
        api, value = params
        if value.prop == ZERO:
            return f"{api.api_full_name}: {_value_text(value, value.value)}"
        return f"{api.api_full_name}: {_slot_text(value)} is always {value.value!r}"


def _slot_text(value: ValueParam) -> str:
    if value.role == "output":
        return f"result {value.prop}"
    return value.name if value.prop == "value" else f"argument {value.name}.{value.prop}"


def _value_text(slot: ValueParam, value: Scalar) -> str:
    """``training is False``; for a number's zero, ``dropout_p is 0`` / ``is not 0``."""
    if slot.prop == ZERO:
        return f"{slot.name} is {'0' if value else 'not 0'}"
    return f"{_slot_text(slot)} is {value!r}"


class ValueChecker(RelationChecker):
    def __init__(self, role: str, results: Sequence[InvariantResult[ValueParams]]) -> None:
        self.role = role
        self._by_api = results_by_api(results)

    def on_signal(self, signal: Signal) -> list[Violation]:
        found = _observed(signal, self.role) if self._by_api else None
        if found is None or found[0].api not in self._by_api:
            return []
        start, pairs = found
        observed = dict(pairs)
        violations = []
        for result in self._by_api[start.api]:
            expected = result.invariant.params.value
            slot = (expected.role, expected.name, expected.prop)
            if slot not in observed:
                continue
            if not holds(result.invariant.precondition, _props_without(start, slot)):
                continue
            if observed[slot] == expected.value:
                result.record_pass()
                continue
            violations.append(
                result.record_violation(_violation(result, signal, expected, observed[slot]))
            )
        return violations


def _violation(
    result: InvariantResult[ValueParams], signal: Signal, expected: ValueParam, actual: Scalar
) -> Violation:
    start = signal.start if isinstance(signal, CallRecord) else signal
    events = (signal.ret,) if isinstance(signal, CallRecord) and signal.ret else ()
    where = "returned" if expected.role == "output" else "was called with"
    return call_violation(
        result,
        start,
        what=f"{start.api} {where} {_shown(expected, actual)}",
        expected=_value_text(expected, expected.value)
        + (
            f" when {result.invariant.precondition.describe()}"
            if result.invariant.precondition
            else ""
        ),
        observed=_value_text(expected, actual),
        events=events,
    )


def _shown(slot: ValueParam, actual: Scalar) -> str:
    if slot.prop == ZERO:
        return f"{slot.name} {'= 0' if actual else '!= 0'}"
    return f"{_slot_text(slot)} = {actual!r}"
