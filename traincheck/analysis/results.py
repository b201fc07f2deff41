"""Result files of a check, the same for ``traincheck-check`` and a live run.

The layout follows what users of the published tool expect, plus what we add:

- ``failed.log``, ``passed.log``, ``not_triggered.log``, ``uncheckable.log``:
  JSON Lines, one line per invariant, by outcome. "Uncheckable" means the run
  never traced the inputs the invariant needs (e.g. no variable states around the
  call), which is not the same as the invariant's situation never arising.
- ``violations_summary.json``: per violated invariant its relation, description,
  first and last step, occurrences and ranks, in root-cause order.
- ``report.html``: a self-contained page built from the same summary, so its
  counts cannot disagree with the files or the CLI.

:class:`ViolationLedger` is fed violations one by one and keeps only a few
examples per invariant, so a run that violates an invariant every step for days
does not grow without bound.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traincheck.analysis.findings import ViolatedInvariant, group_findings
from traincheck.analysis.relations.base import InvariantResult
from traincheck.analysis.violations import Violation
from traincheck.errors import UserError
from traincheck.events import UNKNOWN_RANK
from traincheck.private_files import ensure_private_dir, write_private_file
from traincheck.records import (
    ListedInvariant,
    OutcomeCounts,
    ResultsSummary,
    RunDescription,
    RunManifest,
    ViolationSummary,
    encode_results_summary,
)

MAX_EXAMPLES_PER_INVARIANT = 5
MAX_TIMELINE_STEPS = 2000
"""Distinct steps kept per invariant and rank for the report's timeline: enough to
draw any run at one mark per pixel column, bounded for a run that lasts days."""
MAX_LISTED_PER_OUTCOME = 1000
"""Invariants named per outcome in the summary (passed, not triggered...); the
``*.log`` files have them all."""
OUTCOMES = ("failed", "passed", "not_triggered", "uncheckable")
SUMMARY_FILE = "violations_summary.json"
REPORT_FILE = "report.html"


@dataclass
class _InvariantViolations:
    first: Violation
    count: int = 0
    last_step: int = 0
    ranks: set[int] = field(default_factory=set)
    examples: list[Violation] = field(default_factory=list)
    steps: dict[int, set[int]] = field(default_factory=dict)
    """Rank -> distinct steps with a violation (at most MAX_TIMELINE_STEPS each)."""


class ViolationLedger:
    """Every violation of a run, aggregated per invariant, with bounded examples."""

    def __init__(self) -> None:
        self._by_invariant: dict[str, _InvariantViolations] = {}
        self.total = 0

    def add(self, violation: Violation) -> None:
        self.total += 1
        entry = self._by_invariant.get(violation.invariant_id)
        if entry is None:
            entry = self._by_invariant[violation.invariant_id] = _InvariantViolations(violation)
        entry.count += 1
        entry.last_step = max(entry.last_step, violation.step)
        entry.ranks.add(violation.rank)
        steps = entry.steps.setdefault(violation.rank, set())
        if len(steps) < MAX_TIMELINE_STEPS:
            steps.add(violation.step)
        if len(entry.examples) < MAX_EXAMPLES_PER_INVARIANT:
            entry.examples.append(violation)

    def extend(self, violations: Iterable[Violation]) -> None:
        for violation in violations:
            self.add(violation)

    def in_root_cause_order(self) -> list[_InvariantViolations]:
        """Violated invariants, most likely root cause first (by their first violation)."""
        return sorted(self._by_invariant.values(), key=lambda e: e.first.root_cause_key())

    def violated(self) -> list[ViolatedInvariant]:
        """Each violated invariant with its first violation and totals, for findings."""
        return [
            ViolatedInvariant(e.first, e.count, e.last_step, frozenset(e.ranks))
            for e in self.in_root_cause_order()
        ]

    def steps_by_rank(self, invariant_ids: Iterable[str]) -> dict[str, list[int]]:
        """Steps with a violation of any of ``invariant_ids``, per rank (JSON keys)."""
        merged: dict[int, set[int]] = {}
        for invariant_id in invariant_ids:
            entry = self._by_invariant.get(invariant_id)
            for rank, steps in (entry.steps if entry else {}).items():
                merged.setdefault(rank, set()).update(steps)
        return {str(rank): sorted(steps) for rank, steps in sorted(merged.items())}

    def examples(self, invariant_id: str) -> list[Violation]:
        entry = self._by_invariant.get(invariant_id)
        return list(entry.examples) if entry else []


def outcome_of(result: InvariantResult[Any]) -> str:
    """Which log an invariant belongs in."""
    if result.violated:
        return "failed"
    if result.triggered:
        return "passed"
    if result.unchecked:
        return "uncheckable"
    return "not_triggered"


def summarize(
    results: list[InvariantResult[Any]],
    ledger: ViolationLedger,
    api_calls: Mapping[str, int] | None = None,
    run: RunDescription | None = None,
    damage: Sequence[str] = (),
) -> ResultsSummary:
    """The one summary every report is built from (CLI line, JSON file, HTML page).

    ``api_calls`` (calls per API in the checked run, :attr:`Checker.api_calls`)
    lets a finding say that an API was never called; ``run`` describes the run
    checked (command, times, trace, invariants: :func:`run_description`).
    """
    counts = dict.fromkeys(OUTCOMES, 0)
    for result in results:
        counts[outcome_of(result)] += 1
    violations = [
        ViolationSummary(
            root_cause_rank=rank,
            invariant_id=entry.first.invariant_id,
            relation_type=entry.first.relation,
            display_name=entry.first.text_description,
            what=entry.first.what,
            expected=entry.first.expected,
            observed=entry.first.observed,
            apis=list(entry.first.apis),
            variables=list(entry.first.variables),
            first_step=entry.first.step,
            first_detection_step=entry.first.detection_step,
            last_step=entry.last_step,
            occurrences=entry.count,
            ranks=sorted(entry.ranks),
            num_positive_examples=entry.first.num_positive_examples,
        )
        for rank, entry in enumerate(ledger.in_root_cause_order(), start=1)
    ]
    detections = [v.first_detection_step for v in violations]
    findings = group_findings(ledger.violated(), api_calls)
    return ResultsSummary(
        first_violation_step=min((v.first_step for v in violations), default=None),
        first_detection_step=min((d for d in detections if d is not None), default=None),
        total_violations=ledger.total,
        distinct_invariants_violated=len(violations),
        invariants_checked=len(results),
        outcomes=OutcomeCounts(**counts),
        violations=violations,
        findings=[
            finding.to_record(rank, ledger.steps_by_rank(finding.invariant_ids()))
            for rank, finding in enumerate(findings, start=1)
        ],
        invariants_by_outcome=_listed_by_outcome(results),
        run=run or RunDescription(),
        damage=list(damage),
    )


def _listed_by_outcome(results: list[InvariantResult[Any]]) -> dict[str, list[ListedInvariant]]:
    """The invariants that did not fail, named (bounded), so a report can list them."""
    listed: dict[str, list[ListedInvariant]] = {name: [] for name in OUTCOMES if name != "failed"}
    for result in results:
        rows = listed.get(outcome_of(result))
        if rows is not None and len(rows) < MAX_LISTED_PER_OUTCOME:
            inv = result.invariant
            rows.append(
                ListedInvariant(id=inv.id, text=inv.text_description, relation=inv.relation)
            )
    return listed


def run_description(
    manifest: RunManifest | None,
    *,
    trace_dir: Path | None,
    invariants: Path | str | None,
    last_step: int | None = None,
    loss_by_step: list[tuple[int, float]] | None = None,
) -> RunDescription:
    """What a report says about the run it checked, from the trace's manifest (which
    may be missing: a trace whose run.json is unreadable is still checked)."""
    command = list(manifest.command) if manifest is not None else []
    started = manifest.started_wall_ns if manifest is not None else None
    ended = manifest.ended_wall_ns if manifest is not None else None
    counters = manifest.counters if manifest is not None else None
    return RunDescription(
        command=command,
        script=next((part for part in command if part.endswith(".py")), None),
        started=_iso(started),
        duration_s=round((ended - started) / 1e9, 1)
        if started is not None and ended is not None
        else None,
        trace=str(trace_dir.resolve()) if trace_dir is not None else None,
        ranks=sorted({p.rank for p in counters.producers if p.rank != UNKNOWN_RANK})
        if counters is not None
        else [],
        traincheck_version=_version(),
        invariants=str(invariants) if invariants is not None else None,
        last_step=last_step,
        loss_by_step=loss_by_step or [],
    )


def _iso(wall_ns: int | None) -> str | None:
    if wall_ns is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall_ns / 1e9))


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("traincheck-live")
    except metadata.PackageNotFoundError:
        return "unknown"


def result_row(result: InvariantResult[Any], ledger: ViolationLedger) -> dict[str, Any]:
    """One line of a ``*.log`` file."""
    row: dict[str, Any] = {
        "invariant": result.invariant.to_json(),
        "outcome": outcome_of(result),
        "check_passed": result.violated == 0,
        "triggered": result.triggered > 0,
        "triggered_count": result.triggered,
        "passed_count": result.passed,
        "violated_count": result.violated,
        "unchecked_count": result.unchecked,
    }
    reason = getattr(result, "unchecked_reason", None)
    if reason:
        row["uncheckable_reason"] = reason
    if result.violated:
        row["first_violation_step"] = result.first_violation_step
        row["last_violation_step"] = result.last_violation_step
        row["violations"] = [v.to_json() for v in ledger.examples(result.invariant.id)]
    return row


def write_results(
    outdir: Path,
    results: list[InvariantResult[Any]],
    ledger: ViolationLedger,
    *,
    title: str = "TrainCheck report",
    api_calls: Mapping[str, int] | None = None,
    run: RunDescription | None = None,
    damage: Sequence[str] = (),
) -> ResultsSummary:
    """Write every result file into ``outdir`` (created); return the summary."""
    from traincheck.analysis.report_html import render_report

    rows: dict[str, list[str]] = {name: [] for name in OUTCOMES}
    for result in results:
        rows[outcome_of(result)].append(json.dumps(result_row(result, ledger), sort_keys=True))
    summary = summarize(results, ledger, api_calls, run, damage)
    try:
        # Owner-only like the trace: the results quote the run's command and code.
        ensure_private_dir(outdir)
        for name, lines in rows.items():
            text = "".join(line + "\n" for line in lines)
            write_private_file(outdir / f"{name}.log", text.encode())
        write_private_file(outdir / SUMMARY_FILE, encode_results_summary(summary))
        write_private_file(outdir / REPORT_FILE, render_report(summary, title=title).encode())
    except OSError as exc:
        raise UserError(f"cannot write results to {outdir}: {exc.strerror or exc}") from None
    return summary


def default_output_dir(trace_dir: Path) -> Path:
    """``<trace>_check_<YYYYmmdd_HHMMSS>`` beside the trace, for offline checks: never
    the current directory, and not inside the trace, which may be checked many times
    against different invariants (a live run writes ``TraceDir.live_results`` instead)."""
    trace_dir = trace_dir.resolve()
    stamp = time.strftime("%Y%m%d_%H%M%S")
    candidate = trace_dir.parent / f"{trace_dir.name}_check_{stamp}"
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = trace_dir.parent / f"{trace_dir.name}_check_{stamp}_{suffix}"
    return candidate
