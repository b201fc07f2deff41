"""ConsistentInputOutputRelation: a property of the result equals that of an input, in context.

``torch.nn.Module.__call__: result dtype equals argument input.dtype`` unless
``autocast`` is set. Catches a forward pass that silently changes precision or
device: a layer or buffer left in float64/bfloat16 by a stray ``.to()`` or
``.double()`` promotes the whole output, or autocast leaking out of its context.
The inverted precondition is what lets the invariant hold "unless autocast is
active" (learnt from healthy runs that mix autocast and full-precision calls).

Hypotheses: for every API, every tensor argument and every tensor property in
:data:`IO_PROPS` that both the argument and the result carry. Examples are the
calls that returned a tensor and had that argument: positive when the two
properties are equal. Only the equality is claimed, never the value itself, so the
invariant holds whatever dtype or device a run uses.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

from traincheck.analysis.calls import CallRecord, Signal
from traincheck.analysis.invariants import APIParam, ValueParam
from traincheck.analysis.preconditions import Scalar, feature_key, holds
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
    results_by_api,
)
from traincheck.analysis.relations.call_violation import call_violation
from traincheck.analysis.relations.ordering import is_ordering_candidate
from traincheck.analysis.violations import Violation

IO_PROPS = ("dtype", "device")
"""Tensor properties a result inherits from its input (requires_grad follows the
parameters, not the input, so it is not one of them)."""

FOLLOWS_OUTPUT = "output"
"""``ValueParam.value`` of this relation: the input property equals the result's."""


class IOParams(NamedTuple):
    """At every call of ``api``, the result's ``input.prop`` equals that of the argument
    ``input.name`` (``input.value`` is always :data:`FOLLOWS_OUTPUT`)."""

    api: APIParam
    input: ValueParam


def io_pairs(record: CallRecord) -> Iterator[tuple[str, str, Scalar, Scalar]]:
    """(argument, prop, input value, output value) for every comparable pair of a call."""
    ret = record.ret
    if ret is None or ret.exception or ret.result is None or ret.result.kind != "tensor":
        return
    for arg in record.start.event.args:
        if arg.kind != "tensor":
            continue
        for prop in IO_PROPS:
            before, after = getattr(arg, prop), getattr(ret.result, prop)
            if before is not None and after is not None:
                yield arg.name, prop, before, after


class _IOCollector(Collector):
    def __init__(self) -> None:
        self.examples = KeyedExamples[tuple[str, str, str]]()
        """(api, argument, prop) -> calls where the result's prop equals the argument's."""

    def on_signal(self, signal: Signal) -> None:
        if not isinstance(signal, CallRecord) or not is_ordering_candidate(signal.api):
            return
        pairs = list(io_pairs(signal))
        if not pairs:
            return
        key = feature_key(signal.start.props)
        for name, prop, before, after in pairs:
            self.examples.add((signal.api, name, prop), key, before == after)


class ConsistentInputOutputRelation(Relation[IOParams, _IOCollector]):
    name = "ConsistentInputOutputRelation"
    group = "pre_event"
    params_type = IOParams

    def new_collector(self) -> _IOCollector:
        return _IOCollector()

    def infer(
        self, collector: _IOCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        for (api, name, prop), examples in collector.examples.in_order():
            params = IOParams(APIParam(api), ValueParam("input", name, prop, FOLLOWS_OUTPUT))
            decide(self, params, examples, outcome)
        return outcome

    def new_checker(self, results: Sequence[InvariantResult[IOParams]]) -> RelationChecker:
        return _IOChecker(results)

    def params_problem(self, params: IOParams) -> str | None:
        if params.input.role != "input" or params.input.value != FOLLOWS_OUTPUT:
            return f"the ValueParam must have role 'input' and value {FOLLOWS_OUTPUT!r}"
        return None

    def describe(self, params: IOParams) -> str:
        api, value = params
        return f"{api.api_full_name}: result {value.prop} equals argument {value.name}.{value.prop}"


class _IOChecker(RelationChecker):
    def __init__(self, results: Sequence[InvariantResult[IOParams]]) -> None:
        self._by_api = results_by_api(results)

    def on_signal(self, signal: Signal) -> list[Violation]:
        if not isinstance(signal, CallRecord) or signal.api not in self._by_api:
            return []
        observed = {(name, prop): (a, b) for name, prop, a, b in io_pairs(signal)}
        violations = []
        for result in self._by_api[signal.api]:
            expected = result.invariant.params.input
            pair = observed.get((expected.name, expected.prop))
            if pair is None or not holds(result.invariant.precondition, signal.start.props):
                continue
            if pair[0] == pair[1]:
                result.record_pass()
                continue
            violations.append(result.record_violation(_violation(result, signal, expected, pair)))
        return violations


def _violation(
    result: InvariantResult[IOParams],
    record: CallRecord,
    expected: ValueParam,
    pair: tuple[Scalar, Scalar],
) -> Violation:
    prop, name = expected.prop, expected.name
    precondition = result.invariant.precondition
    return call_violation(
        result,
        record.start,
        what=f"{record.api} turned {name}.{prop} {pair[0]!r} into result {prop} {pair[1]!r}",
        expected=f"result {prop} equals {name}.{prop}"
        + (f" when {precondition.describe()}" if precondition else ""),
        observed=f"{name}.{prop} is {pair[0]!r}, result {prop} is {pair[1]!r}",
        events=(record.ret,) if record.ret else (),
    )
