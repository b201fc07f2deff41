"""What ``traincheck-run`` says when there is no sidecar summary to print.

The sidecar's summary line, when the sidecar lived to drain, is rendered by
:mod:`traincheck.run_summary`. Without one (the sidecar died, or ``--detached``),
the counter files the tracer writes at exit (``tracer-<pid>.json``) still say
what was sent and lost, and ``run.json`` is marked so offline tools know. A
sidecar stopped while its live check was finishing has stored the whole trace
first (``run.json`` says ``live_check.pending``): then only the verdict is
missing, and ``traincheck-check`` can give it.
"""

from __future__ import annotations

import contextlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from traincheck.records import RunCounters, TracerTotals
from traincheck.tracedir import TraceDir


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
    if TraceDir(trace_dir).manifest.is_file():
        lines.append(f"trace: {trace_dir}")
    return lines


def record_lost_sidecar(trace_dir: Path, reason: str, counters: TracerCounters) -> None:
    """Mark run.json so offline tools know the trace stops early and why; the
    sidecar that would have finalised it is gone. Best effort: the summary on
    stderr says the same."""
    trace = TraceDir(trace_dir)
    try:
        manifest = trace.read_manifest()
    except (OSError, ValueError):
        return
    if manifest.attached:
        return  # not ours to mark: traincheck-attach took over the trace
    lost = msgspec.structs.replace(
        manifest,
        status="sidecar_lost",
        sidecar_lost=reason,
        tracer_counters=TracerTotals(
            processes=counters.processes,
            events_sent=counters.events_sent,
            events_dropped=counters.events_dropped,
            batches_dropped=counters.batches_dropped,
        ),
    )
    with contextlib.suppress(OSError):
        trace.write_manifest(lost)


def record_stopped_check(trace_dir: Path, reason: str) -> RunCounters | None:
    """If ``run.json`` says the trace is complete and the live check was still
    finishing, note why the check stopped (the run's status stands) and return the
    sidecar's counters; None when the trace may be incomplete (a sidecar lost
    before its drain). Best effort, like :func:`record_lost_sidecar`."""
    trace = TraceDir(trace_dir)
    try:
        manifest = trace.read_manifest()
    except (OSError, ValueError):
        return None
    counters = manifest.counters
    if counters is None or counters.live_check is None or not counters.live_check.pending:
        return None
    with contextlib.suppress(OSError):
        trace.write_manifest(msgspec.structs.replace(manifest, live_check_stopped=reason))
    return counters


def stopped_check_lines(
    reason: str, counters: RunCounters, trace_dir: Path, invariants: Path | None
) -> list[str]:
    """A complete trace whose live verdict is missing: say so, and how to get it."""
    command = ["traincheck-check", "-f", str(trace_dir)]
    if invariants is not None:
        command += ["-i", str(invariants)]
    return [
        f"sidecar {reason}",
        f"the trace is complete ({counters.events_received} events); the live check did "
        "not finish (its alerts so far are above)",
        f"finish it offline: {shlex.join(command)}",
        f"trace: {trace_dir}",
    ]
