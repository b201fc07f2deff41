"""DataOrderRelation: a data loader's batches differ across epochs and across steps.

Over the content digest the tracer attaches to each batch a DataLoader iterator
yields (the result of ``torch.utils.data.DataLoader.__next__``), per process,
thread and loader (the ``loader`` argument: the loader's ordinal in the process),
two scopes:

- ``epochs``: ``the i-th batch of each epoch differs from the i-th batch of the
  previous epoch``. Catches a sampler that reshuffles identically every epoch: a
  ``DistributedSampler`` whose ``set_epoch`` is never called, a generator re-seeded
  at the top of every epoch. The model sees one fixed order, and nothing fails.
- ``steps``: ``each batch differs from the one before it``. Catches a loop that
  restarts its iterator every step (``next(iter(loader))`` with a sequential
  sampler: the first batch, forever).

An epoch begins at the batch whose ``index`` (its position in the epoch) is not
greater than the previous one's. Examples are comparisons, positive when the two
digests differ; their properties are the pair properties of the two calls
(:func:`~traincheck.analysis.preconditions.pair_props`), so a precondition such as
``shuffle == True`` keeps a sequential validation loader, whose order healthy runs
repeat every epoch, out of the invariant. Guards: a hypothesis needs comparisons
from at least :data:`MIN_EPOCH_PAIRS` pairs of consecutive epochs (or
:data:`MIN_STEP_PAIRS` pairs of consecutive batches) in the healthy runs; only
equality of digests is used, so another batch size or dataset size changes nothing
but the number of comparisons. A digest is never a precondition property.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from traincheck.analysis.calls import CallRecord, CallStart, Signal
from traincheck.analysis.invariants import APIParam, ValueParam
from traincheck.analysis.preconditions import Props, feature_key, pair_props
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
from traincheck.analysis.relations.digest_slots import DistinctDigestChecker
from traincheck.analysis.violations import Violation

ACROSS_EPOCHS, ACROSS_STEPS = "epochs", "steps"
SCOPES = (ACROSS_EPOCHS, ACROSS_STEPS)
DIGEST_PROP = "digest"
MIN_EPOCH_PAIRS = 2
"""Pairs of consecutive epochs (of one loader, summed over traces) an ``epochs``
hypothesis needs: one pair could be a coincidence of short epochs."""
MIN_STEP_PAIRS = 8
"""Pairs of consecutive batches a ``steps`` hypothesis needs."""
TOO_FEW_EPOCHS = "too few epochs or batches seen"

Hypothesis = tuple[str, str, str]
"""(api, result name, scope)."""


class DataOrderParams(NamedTuple):
    """Batches of ``api`` differ in the result ``batch.name``, compared within the scope
    ``batch.value`` names (``batch.role`` is ``output``, ``batch.prop`` :data:`DIGEST_PROP`)."""

    api: APIParam
    batch: ValueParam


def batch_digest(record: CallRecord) -> tuple[str, int] | None:
    """(result name, digest) of a call whose result carries a content digest."""
    ret = record.ret
    if ret is None or ret.exception or ret.result is None:
        return None
    result = ret.result
    if result.kind != "tensor" or not isinstance(result.value, int):
        return None
    if isinstance(result.value, bool):
        return None
    return result.name, result.value


def _arg(start: CallStart, name: str) -> object:
    return next((a.value for a in start.event.args if a.name == name), None)


@dataclass(frozen=True)
class Comparison:
    """One example: a batch compared with an earlier one of the same loader."""

    api: str
    name: str
    scope: str
    distinct: bool
    props: Props
    epoch_pair: int
    """Which pair of consecutive epochs (``epochs``) the comparison belongs to."""


@dataclass
class _LoaderOrder:
    epoch: int = 0
    last_index: int | None = None
    last: tuple[int, Props] | None = None
    current: list[tuple[int, Props]] = field(default_factory=list)
    previous: list[tuple[int, Props]] = field(default_factory=list)


@dataclass
class BatchOrder:
    """The batches seen so far per (pid, thread, api, loader); shared by inference and checking.

    Memory: two epochs' digests per loader (a few integers per batch)."""

    _loaders: dict[tuple[int, int, str, str], _LoaderOrder] = field(default_factory=dict)

    def compare(self, record: CallRecord) -> list[Comparison]:
        found = batch_digest(record)
        if found is None:
            return []
        name, digest = found
        start = record.start
        index = _arg(start, "index")
        key = (start.pid, start.thread, start.api, str(_arg(start, "loader")))
        order = self._loaders.setdefault(key, _LoaderOrder())
        if isinstance(index, int) and order.last_index is not None and index <= order.last_index:
            order.previous, order.current = order.current, []
            order.epoch += 1
        order.last_index = index if isinstance(index, int) else None
        out: list[Comparison] = []
        if order.last is not None:
            props = pair_props(start.props, order.last[1])
            out.append(Comparison(start.api, name, ACROSS_STEPS, order.last[0] != digest, props, 0))
        position = len(order.current)
        if position < len(order.previous):
            other, other_props = order.previous[position]
            props = pair_props(start.props, other_props)
            out.append(
                Comparison(start.api, name, ACROSS_EPOCHS, other != digest, props, order.epoch)
            )
        order.current.append((digest, start.props))
        order.last = (digest, start.props)
        return out


class _DataOrderCollector(Collector):
    def __init__(self) -> None:
        self.examples = KeyedExamples[Hypothesis]()
        self.pairs: Counter[Hypothesis] = Counter()
        """Epoch pairs (``epochs``) or batch pairs (``steps``) seen per hypothesis."""
        self._epoch_pairs: set[tuple[Hypothesis, int]] = set()
        """The epoch pairs of this trace already counted (an epoch pair is counted once
        per hypothesis, however many batches it compares)."""
        self._order = BatchOrder()

    def begin_trace(self) -> None:
        self._epoch_pairs = set()
        self._order = BatchOrder()

    def on_signal(self, signal: Signal) -> None:
        if not isinstance(signal, CallRecord):
            return
        for c in self._order.compare(signal):
            hypothesis = (c.api, c.name, c.scope)
            self.examples.add(hypothesis, feature_key(c.props), c.distinct)
            if c.scope == ACROSS_STEPS:
                self.pairs[hypothesis] += 1
            elif (hypothesis, c.epoch_pair) not in self._epoch_pairs:
                self._epoch_pairs.add((hypothesis, c.epoch_pair))
                self.pairs[hypothesis] += 1


class DataOrderRelation(Relation[DataOrderParams, _DataOrderCollector]):
    name = "DataOrderRelation"
    group = "post_event"
    params_type = DataOrderParams

    def new_collector(self) -> _DataOrderCollector:
        return _DataOrderCollector()

    def infer(
        self, collector: _DataOrderCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        for (api, name, scope), examples in collector.examples.in_order():
            params = DataOrderParams(APIParam(api), ValueParam("output", name, DIGEST_PROP, scope))
            needed = MIN_EPOCH_PAIRS if scope == ACROSS_EPOCHS else MIN_STEP_PAIRS
            if collector.pairs[(api, name, scope)] < needed:
                outcome.rejections.append(
                    Rejection(
                        self.name,
                        self.describe(params),
                        TOO_FEW_EPOCHS,
                        examples.num_positive,
                        examples.num_negative,
                    )
                )
                continue
            decide(self, params, examples, outcome)
        return outcome

    def new_checker(self, results: Sequence[InvariantResult[DataOrderParams]]) -> RelationChecker:
        return _DataOrderChecker(results)

    def params_problem(self, params: DataOrderParams) -> str | None:
        batch = params.batch
        if batch.role != "output" or batch.prop != DIGEST_PROP or batch.value not in SCOPES:
            scopes = " or ".join(repr(scope) for scope in SCOPES)
            return (
                f"the ValueParam must have role 'output', prop {DIGEST_PROP!r} and value {scopes}"
            )
        return None

    def describe(self, params: DataOrderParams) -> str:
        api, batch = params
        if batch.value == ACROSS_EPOCHS:
            return (
                f"the i-th {batch.name} of each epoch from {api.api_full_name} differs from "
                "the i-th of the previous epoch"
            )
        return f"each {batch.name} from {api.api_full_name} differs from the previous one"


class _DataOrderChecker(DistinctDigestChecker[DataOrderParams, Comparison]):
    def __init__(self, results: Sequence[InvariantResult[DataOrderParams]]) -> None:
        super().__init__(results)
        self._order = BatchOrder()

    def comparisons(self, signal: Signal) -> list[Comparison]:
        if not isinstance(signal, CallRecord) or signal.api not in self.apis:
            return []
        return self._order.compare(signal)

    def violation(
        self, result: InvariantResult[DataOrderParams], signal: Signal, c: Comparison
    ) -> Violation:
        assert isinstance(signal, CallRecord)
        return _violation(result, signal, c)


def _violation(
    result: InvariantResult[DataOrderParams], record: CallRecord, c: Comparison
) -> Violation:
    loader = _arg(record.start, "loader")
    if c.scope == ACROSS_EPOCHS:
        what = (
            f"{c.api} (loader {loader}) yielded the same {c.name} at this position as in "
            "the previous epoch"
        )
        observed = "the epoch repeats the previous epoch's order (sampler not reshuffled?)"
    else:
        what = f"{c.api} (loader {loader}) yielded the same {c.name} twice in a row"
        observed = f"the same {c.name} twice in a row"
    precondition = result.invariant.precondition
    return call_violation(
        result,
        record.start,
        what=what,
        expected=result.invariant.text_description
        + (f" when {precondition.describe()}" if precondition else ""),
        observed=observed,
        events=(record.ret,) if record.ret is not None else (),
    )
