"""Live alerts a person can act on: grouped, de-duplicated, throttled, root cause first.

The checker can report the same broken invariant every step, and one bug often
breaks several invariants at once. Printing each violation as it comes buries the
cause in a storm, so the sidecar hands violations to an :class:`AlertSink`:

- Violations are held until the stream moves past their step (or for at most
  ``FLUSH_AFTER_S``), so everything one step revealed is printed together, at
  the latest when the next optimizer step's events arrive.
- Within a flush, alerts are sorted by :meth:`Violation.root_cause_key` (earliest
  step, control flow before state, detection order) and grouped by (step, rank,
  API): one group header, then each alert.
- Only an invariant's first violation is printed in full. Repeats are counted and
  reported in one line when the count reaches 2, 4, 8, ... and at the end.
- At most ``MAX_FULL_ALERTS`` alerts are printed in full per run; the rest are
  summarised in one line per flush (the result files have them all).

Every flush is one string handed to ``write`` (one ``os.write`` in the sidecar),
so alerts never interleave mid-line with the training job's own output. On a
terminal, ``rich`` adds colour; otherwise lines are plain.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from traincheck.analysis.alerts import INDENT, evidence_lines, headline
from traincheck.analysis.violations import Violation
from traincheck.records import FirstViolation, InvariantOutcomes
from traincheck.tracedir import TraceDir

FLUSH_AFTER_S = 1.0
"""A held violation is printed after this long even if its step never ends."""

MAX_FULL_ALERTS = 30
"""Alerts printed in full per run; beyond that, one summary line per flush."""


@dataclass
class _Repeats:
    what: str
    count: int = 1
    first_step: int = 0
    last_step: int = 0
    reported: int = 1


class AlertSink:
    """Buffers violations and prints them in readable, root-cause-ordered groups."""

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        color: bool = False,
        running_counts: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._running_counts = running_counts
        self._color = color
        self._clock = clock
        self._pending: list[Violation] = []
        self._pending_since: float | None = None
        self._repeats: dict[str, _Repeats] = {}
        self._repeat_lines: list[str] = []
        self.printed_in_full = 0
        self.suppressed = 0
        self.order: list[Violation] = []
        """First violations, in the order they were printed (root cause first)."""

    def add(self, violation: Violation) -> None:
        """Take one violation; printing waits for :meth:`pump` or :meth:`close`."""
        repeats = self._repeats.get(violation.invariant_id)
        if repeats is not None:
            repeats.count += 1
            repeats.last_step = max(repeats.last_step, violation.step)
            if self._running_counts and repeats.count >= 2 * repeats.reported:
                repeats.reported = repeats.count
                self._repeat_lines.append(_repeat_line(violation.invariant_id, repeats))
            return
        self._repeats[violation.invariant_id] = _Repeats(
            violation.what, first_step=violation.step, last_step=violation.step
        )
        if self._pending_since is None:
            self._pending_since = self._clock()
        self._pending.append(violation)

    def pump(self, current_step: int) -> None:
        """Print what the stream has moved past (or what waited too long)."""
        if not self._pending and not self._repeat_lines:
            return
        overdue = (
            self._pending_since is not None and self._clock() - self._pending_since >= FLUSH_AFTER_S
        )
        if overdue:
            self._flush(self._pending)
            return
        ready = [v for v in self._pending if v.step < current_step]
        if ready or self._repeat_lines:
            self._flush(ready)

    def close(self) -> None:
        """End of run: print everything held, then the final repeat counts."""
        self._flush(self._pending)
        finals = [
            _repeat_line(inv_id, r, final=True)
            for inv_id, r in self._repeats.items()
            if r.count > r.reported
        ]
        if finals:
            self._emit([("repeat", line) for line in finals])

    def _flush(self, ready: list[Violation]) -> None:
        ready_ids = {id(v) for v in ready}
        self._pending = [v for v in self._pending if id(v) not in ready_ids]
        self._pending_since = self._clock() if self._pending else None
        lines: list[tuple[str, str]] = [("repeat", line) for line in self._repeat_lines]
        self._repeat_lines = []
        for group in group_violations(ready):
            lines += self._group_lines(group)
        if lines:
            self._emit(lines)

    def _group_lines(self, group: list[Violation]) -> list[tuple[str, str]]:
        room = MAX_FULL_ALERTS - self.printed_in_full
        shown, hidden = group[: max(room, 0)], group[max(room, 0) :]
        lines: list[tuple[str, str]] = []
        if len(group) > 1 and shown:
            first = group[0]
            lines.append(
                (
                    "group",
                    f"{len(group)} related violations at step {first.step} (rank {first.rank}) "
                    f"around {group_subject(first)}, most likely root cause first:",
                )
            )
        for violation in shown:
            self.printed_in_full += 1
            self.order.append(violation)
            lines.append(("headline", headline(violation)))
            lines += [("evidence", INDENT + line) for line in evidence_lines(violation)]
        if hidden:
            self.suppressed += len(hidden)
            self.order += hidden
            lines.append(
                (
                    "repeat",
                    f"... {len(hidden)} more violated invariants at step {group[0].step} "
                    "not shown (alert limit reached; all are in the result files)",
                )
            )
        return lines

    def _emit(self, lines: list[tuple[str, str]]) -> None:
        if not self._color:
            self._write("\n".join(text for _, text in lines) + "\n")
            return
        self._write(_render_color(lines))


def group_violations(violations: list[Violation]) -> list[list[Violation]]:
    """Related violations (same step, rank and subject) together, root cause first."""
    ordered = sorted(violations, key=lambda v: v.root_cause_key())
    groups: dict[tuple[int, int, str], list[Violation]] = {}
    for violation in ordered:
        key = (violation.step, violation.rank, group_subject(violation))
        groups.setdefault(key, []).append(violation)
    return sorted(groups.values(), key=lambda g: g[0].root_cause_key())


def group_subject(v: Violation) -> str:
    """The API (or, failing that, the variable) a violation is about."""
    if v.apis:
        return v.apis[-1]
    if v.variables:
        return v.variables[0]
    return v.relation


def _repeat_line(invariant_id: str, r: _Repeats, *, final: bool = False) -> str:
    verb = "in all" if final else "so far"
    return (
        f"  repeated: {r.what} -- {r.count} violations {verb}, steps "
        f"{r.first_step}..{r.last_step} (invariant {invariant_id})"
    )


_STYLES = {"headline": "bold red", "group": "bold yellow", "evidence": "", "repeat": "dim"}


def _render_color(lines: list[tuple[str, str]]) -> str:
    from rich.console import Console
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(
        file=buffer, force_terminal=True, color_system="standard", width=10_000, soft_wrap=True
    )
    for kind, text in lines:
        console.print(Text(text, style=_STYLES.get(kind, "")), highlight=False)
    return buffer.getvalue()


class LiveReporter:
    """What the sidecar does with live violations: alert, count, mark, and at the
    end write the same result files ``traincheck-check -o`` writes.

    With a trace, the results go to its live results folder, and the first
    violation leaves a marker there (``--on-violation stop`` watches for the file,
    so the sidecar's stdout keeps its handshake lines)."""

    def __init__(self, checker: Any, write: Callable[[str], None], trace: TraceDir | None) -> None:
        from traincheck.analysis.results import ViolationLedger

        self._checker = checker
        self.trace = trace
        self.sink = AlertSink(write, color=_stderr_is_terminal())
        self.ledger = ViolationLedger()

    def report(self, violations: list[Violation]) -> None:
        if violations and self.ledger.total == 0 and self.trace is not None:
            self._mark_first(violations[0])
        for violation in violations:
            self.ledger.add(violation)
            self.sink.add(violation)
        self.sink.pump(self._checker.current_step)

    def close(self) -> InvariantOutcomes:
        """Print what is held, write the result files; return the outcome counts and
        the invariants never triggered, for the run's summary.

        "Not triggered" is easy to miss and can be the only trace of a bug that
        silences instead of breaking: an optimizer that never steps makes "its
        parameters change at every step" vacuous, not violated.
        """
        from traincheck.analysis.results import outcome_of, summarize, write_results

        self.sink.close()
        results = self._checker.results()
        if self.trace is None:
            summary = summarize(results, self.ledger)
        else:
            summary = write_results(
                self.trace.live_results, results, self.ledger, title="TrainCheck live check"
            )
        return InvariantOutcomes(
            invariants_checked=summary.invariants_checked,
            outcomes=summary.outcomes,
            not_triggered=[
                r.invariant.text_description for r in results if outcome_of(r) == "not_triggered"
            ],
        )

    def _mark_first(self, violation: Violation) -> None:
        assert self.trace is not None
        marker = FirstViolation(step=violation.step, what=violation.what)
        try:
            self.trace.mark_first_violation(marker)
        except OSError:
            pass  # --on-violation stop then simply does not stop; alerts still print


def _stderr_is_terminal() -> bool:
    try:
        return os.isatty(2)
    except OSError:
        return False
