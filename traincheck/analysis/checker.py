"""The checker: one code path for the live sidecar and for ``traincheck-check``.

Feed it stored events in stream order (events of different processes may
interleave); it rebuilds calls with :class:`CallTracker` and hands every call
signal to each relation's incremental checker. ``finish()`` reports what only the
end of the stream can settle (an A never followed by its B). Offline checking is
nothing but replaying a stored trace through ``feed`` then ``finish``.

Every violation leaves the checker stamped with what the relations cannot know:
its detection order, the step the stream had reached, and a contrasting passing
example of the same invariant.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from traincheck.analysis.calls import CallRecord, CallTracker, Signal
from traincheck.analysis.invariants import Invariant, InvariantSet
from traincheck.analysis.loss_series import LossSeries
from traincheck.analysis.relations.base import InvariantResult, RelationChecker
from traincheck.analysis.relations.known import get_relation
from traincheck.analysis.violations import Violation, event_to_json
from traincheck.events import ApiCall, StoredEvent

__all__ = ["Checker", "InvariantResult", "Violation"]


class _Cursor:
    """The signal being checked right now, shared by every result of one checker."""

    signal: Signal | None = None
    censored: bool = False
    """The signal lies in a window the checker saw only part of (it joined mid-step):
    relations learn from it (the calls happened), but it is judged by nothing."""


@dataclass
class TrackedResult(InvariantResult[Any]):
    """An :class:`InvariantResult` that remembers where its invariant last held.

    Relations call ``record_pass`` at the point that satisfied the invariant; we
    keep a reference to that signal (no copy, so passing stays cheap) and turn it
    into JSON only when a violation needs a contrasting example.
    """

    cursor: _Cursor | None = None
    last_pass: Signal | None = None
    unchecked_reason: str | None = None

    def record_pass(self) -> None:
        if self.cursor is not None and self.cursor.censored:
            return
        super().record_pass()
        if self.cursor is not None:
            self.last_pass = self.cursor.signal

    def record_violation(self, violation: Violation) -> Violation:
        if self.cursor is not None and self.cursor.censored:
            return violation
        numbered = super().record_violation(violation)
        if self.last_pass is None:
            return numbered
        return replace(numbered, passing_example=describe_signal(self.last_pass))


def describe_signal(signal: Signal) -> dict[str, Any]:
    """A call signal as a small JSON record: where it ran and its call event."""
    start = signal.start if isinstance(signal, CallRecord) else signal
    event = start.event
    return {
        "api": event.api,
        "step": event.step,
        "stage": event.stage,
        "pid": start.pid,
        "rank": start.rank,
        "thread": event.thread,
        "events": [event_to_json(event)],
    }


class Checker:
    """Checks a stream of events against an invariant set, incrementally."""

    def __init__(
        self,
        invariant_set: InvariantSet,
        *,
        uncheckable: Mapping[str, str] | None = None,
        joined_mid_run: bool = False,
    ) -> None:
        """``uncheckable``: invariants the run could not have traced the inputs of
        (id -> reason, from :func:`traincheck.analysis.instrumentation.uncheckable_invariants`);
        they are never fed to their relation and are reported as uncheckable.

        ``joined_mid_run`` (``traincheck-attach``): the stream starts somewhere inside
        a step, whose earlier calls were never seen. Judging that partial step would
        report calls as missing that happened before we joined, so each process is
        judged only from its first step boundary on: before it, its calls still
        reach the relations (what happened is remembered), but nothing is judged."""
        self.invariant_set = invariant_set
        self._cursor = _Cursor()
        self._results = [self._new_result(inv) for inv in invariant_set]
        grouped: dict[str, list[InvariantResult[Any]]] = defaultdict(list)
        for result in self._results:
            reason = (uncheckable or {}).get(result.invariant.id)
            if reason is not None:
                result.unchecked, result.unchecked_reason = 1, reason
                continue
            grouped[result.invariant.relation].append(result)
        self._checkers: list[RelationChecker] = []
        for name in sorted(grouped):
            relation = get_relation(name)
            if relation is None:
                raise ValueError(f"unknown relation {name!r}")
            self._checkers.append(relation.checker_for(grouped[name]))
        self._tracker = CallTracker()
        self._finished = False
        self.events_fed = 0
        self.violations_found = 0
        self.current_step = 0
        """The highest step any event of the stream has carried so far."""
        self.api_calls: Counter[str] = Counter()
        """Calls per API so far: lets a finding say an API was never called at all."""
        self.losses = LossSeries()
        """The training loss per step, for the report's timeline."""
        self._first_step: dict[int, int] | None = {} if joined_mid_run else None
        """Joined mid-run: the first step seen of each process still censored."""
        self._checked_pids: set[int] = set()

    def _new_result(self, invariant: Invariant[Any]) -> TrackedResult:
        return TrackedResult(invariant, cursor=self._cursor)

    def feed(self, stored_event: StoredEvent) -> list[Violation]:
        """Consume one event; return the violations it revealed (usually none)."""
        self.events_fed += 1
        event = stored_event.event
        if type(event) is ApiCall:
            self.api_calls[event.api] += 1
            self.losses.feed(stored_event)
        step = getattr(event, "step", None)
        if isinstance(step, int) and step > self.current_step:
            self.current_step = step
        signal = self._tracker.feed(stored_event)
        if signal is None or not self._checkers:
            return []
        censored = self._first_step is not None and self._censored(stored_event.pid, step)
        self._cursor.signal, self._cursor.censored = signal, censored
        violations: list[Violation] = []
        for checker in self._checkers:
            violations += checker.on_signal(signal)
        self._cursor.signal, self._cursor.censored = None, False
        return [] if censored else self._stamp(violations)

    def _censored(self, pid: int, step: object) -> bool:
        """Whether ``pid`` is still before its first step boundary since we joined."""
        first = self._first_step
        assert first is not None
        if pid in self._checked_pids:
            return False
        if not isinstance(step, int):
            return True
        if first.setdefault(pid, step) < step:
            self._checked_pids.add(pid)  # boundary passed: checked from here on
            return False
        return True

    def finish(self) -> list[Violation]:
        """End of stream; idempotent (a second call reports nothing new)."""
        if self._finished:
            return []
        self._finished = True
        violations: list[Violation] = []
        for checker in self._checkers:
            violations += checker.finish()
        return self._stamp(violations)

    def _stamp(self, violations: list[Violation]) -> list[Violation]:
        if not violations:
            return violations
        stamped = []
        for violation in violations:
            self.violations_found += 1
            stamped.append(
                replace(violation, detection_step=self.current_step, seq=self.violations_found)
            )
        return stamped

    def results(self) -> list[InvariantResult[Any]]:
        """Per-invariant counts (triggered / passed / violated / unchecked), in file order."""
        return list(self._results)
