"""The few lines a person reads when a sidecar session ends.

``traincheck-run`` prints them from the sidecar's summary line, ``traincheck-attach``
from its in-process sidecar: one rendering of :class:`~traincheck.records.RunCounters`
for both, so the two cannot tell the same run differently.
"""

from __future__ import annotations

from pathlib import Path

from traincheck.records import InvariantOutcomes, LiveCheckLag, RunCounters
from traincheck.tracedir import LIVE_RESULTS_NAME

MAX_NOT_TRIGGERED_LISTED = 3
"""Never-triggered invariants named in the summary; the rest are in not_triggered.log."""

MAX_PIDS_LISTED = 8


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
    if summary.batches_lost:
        lines.append(
            f"not saved: {summary.batches_lost} batches ({summary.events_lost} events); "
            "the rest of the trace is readable"
        )
    lines.extend(lag_lines(summary.live_check))
    if summary.checker_errors:
        lines.append(f"checker errors: {summary.checker_errors} (see alerts above)")
    if summary.drain_ended == "time_limit":
        lines.append(
            "a traced process was still running when the sidecar's drain time ran out; "
            "anything it sent later is not in the trace"
        )
    if summary.status == "killed":
        lines.append("a traced process ended without saying goodbye; the trace stops there")
    if summary.workers_vanished:
        pids = ", ".join(map(str, summary.workers_vanished[:MAX_PIDS_LISTED]))
        more = " ..." if len(summary.workers_vanished) > MAX_PIDS_LISTED else ""
        lines.append(
            f"{len(summary.workers_vanished)} worker process(es) ended without saying "
            f"goodbye (pid {pids}{more}), e.g. terminated by their pool; their traces stop there"
        )
    elif summary.status == "detached":
        lines.append("detached; the job keeps running (traincheck-attach again to resume)")
    lines.append(f"trace: {trace_dir}")
    return lines


def lag_lines(lag: LiveCheckLag | None) -> list[str]:
    """Said only when the live check fell behind storage: how far, and what it then
    read back from the stored trace (a check that kept up says nothing)."""
    if lag is None or not (lag.batches_from_disk or lag.events_unchecked or lag.read_errors):
        return []
    lines = [
        f"live check fell behind (at most {lag.most_behind_batches} batches): "
        f"{lag.batches_from_disk} batches checked from the stored trace"
    ]
    if lag.events_unchecked:
        lines.append(f"live check skipped {lag.events_unchecked} events (not saved, no room)")
    lines.extend(f"live check could not read back: {error}" for error in lag.read_errors)
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
