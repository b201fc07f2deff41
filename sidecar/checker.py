"""The checker: one code path for the live sidecar and for ``traincheck-check``.

Feed it stored events in stream order (events of different processes may
interleave); it rebuilds calls with :class:`CallTracker` and hands every call
signal to each relation's incremental checker. ``finish()`` reports what only the
end of the stream can settle (an A never followed by its B). Offline checking is
nothing but replaying a stored trace through ``feed`` then ``finish``.
"""

from __future__ import annotations

from collections import defaultdict

from traincheck.sidecar.calls import CallTracker
from traincheck.sidecar.invariants import InvariantSet
from traincheck.sidecar.relations.base import InvariantResult, RelationChecker
from traincheck.sidecar.relations.registry import get_relation
from traincheck.sidecar.store import StoredEvent
from traincheck.sidecar.violations import Violation

__all__ = ["Checker", "InvariantResult", "Violation"]


class Checker:
    """Checks a stream of events against an invariant set, incrementally."""

    def __init__(self, invariant_set: InvariantSet) -> None:
        self.invariant_set = invariant_set
        self._results = [InvariantResult(inv) for inv in invariant_set]
        grouped: dict[str, list[InvariantResult]] = defaultdict(list)
        for result in self._results:
            grouped[result.invariant.relation].append(result)
        self._checkers: list[RelationChecker] = []
        for name in sorted(grouped):
            relation = get_relation(name)
            if relation is None:
                raise ValueError(f"unknown relation {name!r}")
            self._checkers.append(relation.new_checker(grouped[name]))
        self._tracker = CallTracker()
        self._finished = False
        self.events_fed = 0

    def feed(self, stored_event: StoredEvent) -> list[Violation]:
        """Consume one event; return the violations it revealed (usually none)."""
        self.events_fed += 1
        signal = self._tracker.feed(stored_event)
        if signal is None or not self._checkers:
            return []
        violations: list[Violation] = []
        for checker in self._checkers:
            violations += checker.on_signal(signal)
        return violations

    def finish(self) -> list[Violation]:
        """End of stream; idempotent (a second call reports nothing new)."""
        if self._finished:
            return []
        self._finished = True
        violations: list[Violation] = []
        for checker in self._checkers:
            violations += checker.finish()
        return violations

    def results(self) -> list[InvariantResult]:
        """Per-invariant counts (triggered / passed / violated / unchecked), in file order."""
        return list(self._results)
