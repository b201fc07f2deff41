"""Inference: traces in, invariants out, independent of trace order.

Every selected relation gets one collector; each trace is streamed once through
a :class:`CallTracker` and every call signal goes to every collector. Evidence
from all traces is pooled, so an invariant must hold in every run (a negative in
any run that the precondition does not explain rejects it). Collectors count
examples in multisets and relations iterate hypotheses in sorted order, so the
same traces in any order give the same invariants, in the same order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from traincheck.analysis.calls import CallTracker
from traincheck.analysis.invariants import Invariant, InvariantSet
from traincheck.analysis.relations.base import (
    DEFAULT_SETTINGS,
    Collector,
    InferSettings,
    Rejection,
)
from traincheck.analysis.relations.known import AnyRelation, select_relations
from traincheck.events import StoredEvent


class EventSource(Protocol):
    """A healthy run to learn from: a stored trace, or anything else that yields its events."""

    def events(self) -> Iterator[StoredEvent]: ...


@dataclass
class InferResult:
    invariant_set: InvariantSet
    rejections: list[Rejection] = field(default_factory=list)

    def invariants_per_relation(self) -> Counter[str]:
        return Counter(inv.relation for inv in self.invariant_set)

    def rejections_per_reason(self) -> Counter[tuple[str, str]]:
        return Counter((r.relation, r.reason) for r in self.rejections)


def infer_from_streams(
    streams: Iterable[Iterable[StoredEvent]],
    relations: Sequence[AnyRelation] | None = None,
    settings: InferSettings = DEFAULT_SETTINGS,
    on_trace_done: Callable[[], None] | None = None,
) -> InferResult:
    """Infer invariants from event streams (one per run).

    ``on_trace_done`` is called after each stream (the CLI's progress bar).
    """
    relations = list(relations) if relations is not None else select_relations()
    collectors: list[tuple[AnyRelation, Collector]] = [(r, r.new_collector()) for r in relations]
    for stream in streams:
        tracker = CallTracker()
        for _, collector in collectors:
            collector.begin_trace()
        for stored in stream:
            signal = tracker.feed(stored)
            if signal is not None:
                for _, collector in collectors:
                    collector.on_signal(signal)
        for _, collector in collectors:
            collector.end_trace()
        if on_trace_done is not None:
            on_trace_done()
    invariants: list[Invariant[Any]] = []
    rejections: list[Rejection] = []
    for relation, collector in collectors:
        outcome = relation.infer(collector, settings)
        invariants += outcome.invariants
        rejections += outcome.rejections
    invariants.sort(key=lambda inv: (inv.relation, inv.text_description, inv.id))
    rejections.sort(key=lambda r: (r.relation, r.text_description, r.reason))
    return InferResult(InvariantSet(tuple(invariants)), rejections)


def infer(
    traces: Sequence[EventSource],
    relations: Sequence[AnyRelation] | None = None,
    settings: InferSettings = DEFAULT_SETTINGS,
    on_trace_done: Callable[[], None] | None = None,
) -> InferResult:
    """Infer invariants from traces (e.g. ``traincheck.sidecar.store.open_trace``, which
    streams each from disk as it is read)."""
    return infer_from_streams((t.events() for t in traces), relations, settings, on_trace_done)
