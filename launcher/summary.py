"""The human summary ``traincheck-run`` prints on stderr when the run is over.

Its sources: the sidecar's summary line when the sidecar lived to drain, else the
counter files the tracer writes at exit (``TRACE_DIR/tracer-<pid>.json``) -- so
lost events are reported even when the sidecar was killed.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traincheck.tracedir import MANIFEST_NAME, TraceDir, write_manifest


@dataclass
class TracerCounters:
    """Counters summed over every traced process that wrote a counters file."""

    processes: int = 0
    events_sent: int = 0
    events_dropped: int = 0
    batches_sent: int = 0
    batches_dropped: int = 0
    unreadable: list[str] = field(default_factory=list)


def read_tracer_counters(trace_dir: Path) -> TracerCounters:
    valid, invalid = TraceDir(trace_dir).read_tracer_counters()
    return TracerCounters(
        processes=len(valid),
        events_sent=sum(c.events_sent for c in valid),
        events_dropped=sum(c.events_dropped for c in valid),
        batches_sent=sum(c.batches_sent for c in valid),
        batches_dropped=sum(c.batches_dropped for c in valid),
        unreadable=invalid,
    )


def summary_lines(summary: dict[str, Any], trace_dir: Path) -> list[str]:
    """What the sidecar saw, in a few short lines."""
    producers = summary.get("producers", [])
    lines = [
        f"received {summary.get('events_received', 0)} events in "
        f"{summary.get('batches_received', 0)} batches from {len(producers)} process(es); "
        f"dropped {summary.get('events_dropped', 0)} events, "
        f"{summary.get('batches_missing', 0)} batches missing; "
        f"{summary.get('rejected', 0)} rejected messages",
        _violations(int(summary.get("violations", 0))),
    ]
    lines.extend(outcome_lines(summary.get("invariant_outcomes")))
    for reason in summary.get("rejected_reasons", []):
        lines.append(f"rejected: {reason}")
    for error in summary.get("write_errors", []):
        lines.append(f"trace write error: {error}")
    if summary.get("checker_errors"):
        lines.append(f"checker errors: {summary['checker_errors']} (see alerts above)")
    if summary.get("status") == "killed":
        lines.append("a traced process ended without saying goodbye; the trace stops there")
    lines.append(f"trace: {trace_dir}")
    return lines


MAX_NOT_TRIGGERED_LISTED = 3
"""Never-triggered invariants named in the summary; the rest are in not_triggered.log."""


def outcome_lines(outcomes: dict[str, Any] | None) -> list[str]:
    """How the live check's invariants fared, and which never applied in this run.

    An invariant that held in every healthy run but never triggered here speaks of
    something this run did not do (an optimizer that never stepped, a loader
    never iterated): worth a look, so the first few are named.
    """
    if not outcomes:
        return []
    counts = outcomes.get("outcomes", {})
    lines = [
        f"{outcomes.get('invariants_checked', 0)} invariants: {counts.get('failed', 0)} failed,"
        f" {counts.get('passed', 0)} passed, {counts.get('not_triggered', 0)} not triggered,"
        f" {counts.get('uncheckable', 0)} uncheckable"
    ]
    never = outcomes.get("not_triggered") or []
    if never:
        lines.append("not triggered (what they speak of never happened in this run):")
        lines.extend(f"  {text}" for text in never[:MAX_NOT_TRIGGERED_LISTED])
        if len(never) > MAX_NOT_TRIGGERED_LISTED:
            more = len(never) - MAX_NOT_TRIGGERED_LISTED
            lines.append(f"  ... and {more} more (live_check/not_triggered.log)")
    return lines


def _violations(count: int) -> str:
    return "1 violation" if count == 1 else f"{count} violations"


def lost_sidecar_lines(reason: str, counters: TracerCounters, trace_dir: Path) -> list[str]:
    """What can still be said when the sidecar is gone."""
    lines = [f"sidecar {reason}; the trace is incomplete"]
    if counters.processes:
        lines.append(
            f"tracer counters from {counters.processes} process(es): "
            f"{counters.events_sent} events sent, {counters.events_dropped} events dropped, "
            f"{counters.batches_dropped} batches dropped"
        )
    else:
        lines.append("no tracer counters found; dropped counts unknown")
    lines.append(f"trace: {trace_dir}")
    return lines


def detached_lines(counters: TracerCounters, trace_dir: Path) -> list[str]:
    """The end of a ``--detached`` run: what reached attached sidecars, what did not."""
    lines = [
        f"detached run over; tracer counters from {counters.processes} process(es): "
        f"{counters.events_sent} events sent to attached sidecars, "
        f"{counters.events_dropped} events dropped"
    ]
    if (trace_dir / MANIFEST_NAME).is_file():
        lines.append(f"trace: {trace_dir}")
    return lines


def record_lost_sidecar(trace_dir: Path, reason: str, counters: TracerCounters) -> None:
    """Mark run.json so offline tools know the trace stops early and why; the
    sidecar that would have finalised it is gone. Best effort: the summary on
    stderr says the same."""
    path = trace_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(manifest, dict) or manifest.get("attached"):
        return  # not ours to mark: traincheck-attach took over the trace
    manifest.update(
        status="sidecar_lost",
        sidecar_lost=reason,
        tracer_counters={
            "processes": counters.processes,
            "events_sent": counters.events_sent,
            "events_dropped": counters.events_dropped,
            "batches_dropped": counters.batches_dropped,
        },
    )
    with contextlib.suppress(OSError):
        write_manifest(trace_dir, manifest)
