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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traincheck.analysis.relations.base import InvariantResult
from traincheck.analysis.violations import Violation
from traincheck.errors import UserError
from traincheck.records import (
    OutcomeCounts,
    ResultsSummary,
    ViolationSummary,
    encode_results_summary,
)

MAX_EXAMPLES_PER_INVARIANT = 5
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
        if len(entry.examples) < MAX_EXAMPLES_PER_INVARIANT:
            entry.examples.append(violation)

    def extend(self, violations: Iterable[Violation]) -> None:
        for violation in violations:
            self.add(violation)

    def in_root_cause_order(self) -> list[_InvariantViolations]:
        """Violated invariants, most likely root cause first (by their first violation)."""
        return sorted(self._by_invariant.values(), key=lambda e: e.first.root_cause_key())

    def examples(self, invariant_id: str) -> list[Violation]:
        entry = self._by_invariant.get(invariant_id)
        return list(entry.examples) if entry else []


def outcome_of(result: InvariantResult) -> str:
    """Which log an invariant belongs in."""
    if result.violated:
        return "failed"
    if result.triggered:
        return "passed"
    if result.unchecked:
        return "uncheckable"
    return "not_triggered"


def summarize(results: list[InvariantResult], ledger: ViolationLedger) -> ResultsSummary:
    """The one summary every report is built from (CLI line, JSON file, HTML page)."""
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
    return ResultsSummary(
        first_violation_step=min((v.first_step for v in violations), default=None),
        first_detection_step=min((d for d in detections if d is not None), default=None),
        total_violations=ledger.total,
        distinct_invariants_violated=len(violations),
        invariants_checked=len(results),
        outcomes=OutcomeCounts(**counts),
        violations=violations,
    )


def result_row(result: InvariantResult, ledger: ViolationLedger) -> dict[str, Any]:
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
    results: list[InvariantResult],
    ledger: ViolationLedger,
    *,
    title: str = "TrainCheck report",
) -> ResultsSummary:
    """Write every result file into ``outdir`` (created); return the summary."""
    from traincheck.analysis.report_html import render_report

    rows: dict[str, list[str]] = {name: [] for name in OUTCOMES}
    for result in results:
        rows[outcome_of(result)].append(json.dumps(result_row(result, ledger), sort_keys=True))
    summary = summarize(results, ledger)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        for name, lines in rows.items():
            (outdir / f"{name}.log").write_text("".join(line + "\n" for line in lines))
        (outdir / SUMMARY_FILE).write_bytes(encode_results_summary(summary))
        (outdir / REPORT_FILE).write_text(render_report(summary, title=title))
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
