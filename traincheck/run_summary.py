"""The few lines a person reads when a sidecar session ends.

``traincheck-run`` prints them from the sidecar's summary line, ``traincheck-attach``
from its in-process sidecar: one rendering of :class:`~traincheck.records.RunCounters`
for both, so the two cannot tell the same run differently.
"""

from __future__ import annotations

from pathlib import Path

from traincheck.records import InvariantOutcomes, RunCounters
from traincheck.tracedir import LIVE_RESULTS_NAME

MAX_NOT_TRIGGERED_LISTED = 3
"""Never-triggered invariants named in the summary; the rest are in not_triggered.log."""


def summary_lines(summary: RunCounters, trace_dir: Path) -> list[str]:
    """What the sidecar saw, in a few short lines."""
    lines = [
        f"received {summary.events_received} events in "
        f"{summary.batches_received} batches from {len(summary.producers)} process(es); "
        f"dropped {summary.events_dropped} events, "
        f"{summary.batches_missing} batches missing; "
        f"{summary.rejected} rejected messages",
        _violations(summary.violations),
    ]
    lines.extend(outcome_lines(summary.invariant_outcomes))
    lines.extend(f"rejected: {reason}" for reason in summary.rejected_reasons)
    lines.extend(f"trace write error: {error}" for error in summary.write_errors)
    if summary.checker_errors:
        lines.append(f"checker errors: {summary.checker_errors} (see alerts above)")
    if summary.status == "killed":
        lines.append("a traced process ended without saying goodbye; the trace stops there")
    elif summary.status == "detached":
        lines.append("detached; the job keeps running (traincheck-attach again to resume)")
    lines.append(f"trace: {trace_dir}")
    return lines


def outcome_lines(outcomes: InvariantOutcomes | None) -> list[str]:
    """How the live check's invariants fared, and which never applied in this run.

    An invariant that held in every healthy run but never triggered here speaks of
    something this run did not do (an optimizer that never stepped, a loader
    never iterated): worth a look, so the first few are named.
    """
    if outcomes is None:
        return []
    counts = outcomes.outcomes
    lines = [
        f"{outcomes.invariants_checked} invariants: {counts.failed} failed,"
        f" {counts.passed} passed, {counts.not_triggered} not triggered,"
        f" {counts.uncheckable} uncheckable"
    ]
    never = outcomes.not_triggered
    if never:
        lines.append("not triggered (what they speak of never happened in this run):")
        lines.extend(f"  {text}" for text in never[:MAX_NOT_TRIGGERED_LISTED])
        if len(never) > MAX_NOT_TRIGGERED_LISTED:
            more = len(never) - MAX_NOT_TRIGGERED_LISTED
            lines.append(f"  ... and {more} more ({LIVE_RESULTS_NAME}/not_triggered.log)")
    return lines


def _violations(count: int) -> str:
    return "1 violation" if count == 1 else f"{count} violations"
