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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from traincheck.analysis.alerts import INDENT, evidence_lines, finding_lines, headline
from traincheck.analysis.findings import Finding, ViolatedInvariant, group_findings
from traincheck.analysis.violations import Violation
from traincheck.records import FirstViolation, InvariantOutcomes, RunManifest
from traincheck.terminal_text import printable
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
    ranks: set[int] = field(default_factory=set)


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
            repeats.ranks.add(violation.rank)
            if self._running_counts and repeats.count >= 2 * repeats.reported:
                repeats.reported = repeats.count
                self._repeat_lines.append(_repeat_line(violation.invariant_id, repeats))
            return
        self._repeats[violation.invariant_id] = _Repeats(
            violation.what,
            first_step=violation.step,
            last_step=violation.step,
            ranks={violation.rank},
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

    def write_block(self, lines: list[str]) -> None:
        """Print plain lines (the end-of-run findings) as one write, like an alert group."""
        self._emit([("finding" if i == 0 else "evidence", line) for i, line in enumerate(lines)])

    def _emit(self, lines: list[tuple[str, str]]) -> None:
        lines = [(kind, printable(text)) for kind, text in lines]
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


_STYLES = {
    "headline": "bold red",
    "group": "bold yellow",
    "finding": "bold red",
    "evidence": "",
    "repeat": "dim",
}


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
    violation, once printed, leaves a marker there (``--on-violation stop``
    watches for the file, so the sidecar's stdout keeps its handshake lines)."""

    def __init__(
        self,
        checker: Any,
        write: Callable[[str], None],
        trace: TraceDir | None,
        *,
        verbose: bool = False,
    ) -> None:
        """``verbose``: every violated invariant in full (:class:`AlertSink`) instead
        of one block per finding (:class:`FindingSink`)."""
        from traincheck.analysis.results import ViolationLedger

        self._checker = checker
        self.trace = trace
        color = _stderr_is_terminal()
        self.sink: AlertSink = (
            AlertSink(write, color=color)
            if verbose
            else FindingSink(write, api_calls=lambda: checker.api_calls, color=color)
        )
        self.ledger = ViolationLedger()
        self._marked = False

    def report(self, violations: list[Violation]) -> None:
        for violation in violations:
            self.ledger.add(violation)
            self.sink.add(violation)
        self.sink.pump(self._checker.current_step)
        self._mark_first_printed()

    def _mark_first_printed(self) -> None:
        """Mark the first violation once its alert is on the terminal, not before:
        ``--on-violation stop`` reacts to the mark, and its "stopping the job" line
        must come after the alert that explains it."""
        if self._marked or not self.sink.order or self.trace is None:
            return
        self._marked = True
        first = self.sink.order[0]
        try:
            self.trace.mark_first_violation(FirstViolation(step=first.step, what=first.what))
        except OSError:
            pass  # --on-violation stop then simply does not stop; alerts still print

    def close(self, manifest: RunManifest | None = None) -> InvariantOutcomes:
        """Print what is held, write the result files; return the outcome counts and
        the invariants never triggered, for the run's summary. ``manifest``: what
        the trace's ``run.json`` says, which the report describes the run from.

        "Not triggered" is easy to miss and can be the only trace of a bug that
        silences instead of breaking: an optimizer that never steps makes "its
        parameters change at every step" vacuous, not violated.
        """
        from traincheck.analysis.results import (
            outcome_of,
            run_description,
            summarize,
            write_results,
        )

        self.sink.close()
        self._mark_first_printed()
        results = self._checker.results()
        calls = self._checker.api_calls
        run = run_description(
            manifest,
            trace_dir=self.trace.root if self.trace is not None else None,
            invariants=manifest.invariants if manifest is not None else None,
            last_step=self._checker.current_step,
            loss_by_step=self._checker.losses.points(),
        )
        if self.trace is None:
            summary = summarize(results, self.ledger, calls, run)
        else:
            summary = write_results(
                self.trace.live_results,
                results,
                self.ledger,
                title="TrainCheck live check",
                api_calls=calls,
                run=run,
            )
        findings = finding_lines(summary)
        if findings:
            self.sink.write_block(findings)
        return InvariantOutcomes(
            invariants_checked=summary.invariants_checked,
            outcomes=summary.outcomes,
            not_triggered=[
                r.invariant.text_description for r in results if outcome_of(r) == "not_triggered"
            ],
        )


def _stderr_is_terminal() -> bool:
    try:
        return os.isatty(2)
    except OSError:
        return False


class FindingSink(AlertSink):
    """Live alerts as findings: one block when a finding is established, then one
    line when it grows, never a wall (``--verbose`` gives :class:`AlertSink`).

    The violations are held and released exactly as :class:`AlertSink` holds them
    (so a finding appears within the step its first violation does); at each
    release the findings of everything seen so far are recomputed with
    :func:`~traincheck.analysis.findings.group_findings`, the same grouping the
    result files use. A finding is known by its subject: a new subject prints a
    block, a known one prints an update line when its invariants grow or its
    violations double.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        api_calls: Callable[[], Mapping[str, int]] | None = None,
        color: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(write, color=color, running_counts=False, clock=clock)
        self._api_calls = api_calls
        self._firsts: dict[str, Violation] = {}
        self._shown: dict[str, tuple[int, int]] = {}
        """Subject -> (invariants, violations) when its last line was printed."""
        self._last_update = clock()
        self._released: set[str] = set()
        """Invariants whose first violation was released (printed as part of a finding)."""
        self.findings_shown = 0

    def add(self, violation: Violation) -> None:
        self._firsts.setdefault(violation.invariant_id, violation)
        super().add(violation)

    def pump(self, current_step: int) -> None:
        super().pump(current_step)
        if self._shown and self._clock() - self._last_update >= FLUSH_AFTER_S:
            self._report()

    def close(self) -> None:
        self._flush(self._pending)

    def _flush(self, ready: list[Violation]) -> None:
        ready_ids = {id(v) for v in ready}
        self._pending = [v for v in self._pending if id(v) not in ready_ids]
        self._pending_since = self._clock() if self._pending else None
        self._repeat_lines = []
        self._released.update(v.invariant_id for v in ready)
        if ready:
            self._report()

    def _report(self) -> None:
        self._last_update = self._clock()
        violated = [
            ViolatedInvariant(
                self._firsts[inv_id],
                self._repeats[inv_id].count,
                self._repeats[inv_id].last_step,
                frozenset(self._repeats[inv_id].ranks),
            )
            for inv_id in self._released
        ]
        calls = self._api_calls() if self._api_calls is not None else None
        lines: list[tuple[str, str]] = []
        for finding in group_findings(violated, calls):
            size = (len(finding.members), finding.violations)
            shown = self._shown.get(finding.subject)
            if shown is None:
                lines += self._finding_block(finding)
            elif size[0] > shown[0] or size[1] >= 2 * shown[1]:
                lines.append(("repeat", _finding_update(finding)))
            else:
                continue
            self._shown[finding.subject] = size
        if lines:
            self._emit(lines)

    def _finding_block(self, finding: Finding) -> list[tuple[str, str]]:
        self.findings_shown += 1
        if self.findings_shown > MAX_FULL_ALERTS:
            self.suppressed += 1
            return [("repeat", f"... finding not shown (limit reached): {finding.headline}")]
        first = finding.first
        self.order.append(first)
        lines = [("headline", f"FINDING at step {finding.first_step}: {finding.headline}")]
        lines += [("evidence", INDENT + line) for line in evidence_lines(first)]
        others = len(finding.members) - 1
        if others:
            lines.append(
                (
                    "evidence",
                    f"{INDENT}supported by {others} more violated invariant"
                    f"{'s' if others != 1 else ''} (--verbose shows each; all are in the "
                    "result files)",
                )
            )
        return lines


def _finding_update(finding: Finding) -> str:
    return (
        f"  finding `{finding.subject}`: {len(finding.members)} invariants, "
        f"{finding.violations} violations so far, steps {finding.first_step}..{finding.last_step}"
    )
