"""``traincheck-check``: check a stored trace against an invariants file.

It replays the stored events, in stored order, through the same
:class:`~traincheck.sidecar.checker.Checker` the sidecar feeds live, so offline
and live results cannot differ. Exit code: 1 when violations were found, 0 when
none, 2 on a user error. Each violated invariant is printed once in full (its
first occurrence) with a count of the repeats; ``-o`` writes every result.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from traincheck.sidecar.alerts import format_alert
from traincheck.sidecar.checker import Checker, InvariantResult, Violation
from traincheck.sidecar.invariants import load_invariants
from traincheck.sidecar.store import read_trace

from traincheck.errors import UserError

PROG = "traincheck-check"
MAX_EXAMPLES_PER_INVARIANT = 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Check a trace against invariants.")
    parser.add_argument("-f", "--trace-folder", required=True, type=Path, metavar="TRACE_DIR")
    parser.add_argument("-i", "--invariants", required=True, type=Path, metavar="FILE")
    parser.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=None,
        metavar="OUTDIR",
        help="write failed.log, passed.log, not_triggered.log, violations_summary.json",
    )
    return parser  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    invariant_set = load_invariants(args.invariants)
    trace = read_trace(args.trace_folder)
    for warning in trace.warnings:
        print(f"{PROG}: warning: {args.trace_folder}: {warning}", file=sys.stderr)
    if args.output_dir is not None:
        _prepare_output_dir(args.output_dir)
    checker = Checker(invariant_set)
    violations: list[Violation] = []
    for stored in trace.events():
        violations += checker.feed(stored)
    violations += checker.finish()
    results = checker.results()
    _print_report(violations, results)
    if args.output_dir is not None:
        write_reports(args.output_dir, results, violations)
    return 1 if violations else 0


def _prepare_output_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output directory {path}: {exc.strerror or exc}") from None


def _print_report(violations: list[Violation], results: list[InvariantResult]) -> None:
    by_id = {r.invariant.id: r for r in results}
    for v in violations:
        if v.occurrence != 1:
            continue
        print(format_alert(v))
        result = by_id.get(v.invariant_id)
        if result is not None and result.violated > 1:
            print(
                f"    repeated: {result.violated} violations in all, "
                f"steps {result.first_violation_step}..{result.last_violation_step}"
            )
    violated = sum(1 for r in results if r.violated)
    triggered = sum(1 for r in results if r.triggered)
    first = min((v.step for v in violations), default=None)
    summary = (
        f"{PROG}: {len(violations)} violations of {violated} invariants"
        f"{f' (first at step {first})' if first is not None else ''}; "
        f"{triggered} of {len(results)} invariants triggered, "
        f"{len(results) - triggered} not triggered"
    )
    print(summary)


def write_reports(
    outdir: Path, results: list[InvariantResult], violations: list[Violation]
) -> None:
    """Write the JSON Lines logs and the summary (one line per invariant in each log)."""
    examples: dict[str, list[Violation]] = {}
    for v in violations:
        examples.setdefault(v.invariant_id, []).append(v)
    failed, passed, not_triggered = [], [], []
    for r in results:
        row = {
            "invariant": r.invariant.to_json(),
            "check_passed": r.violated == 0,
            "triggered": r.triggered > 0,
            "triggered_count": r.triggered,
            "passed_count": r.passed,
            "violated_count": r.violated,
            "unchecked_count": r.unchecked,
        }
        if r.violated:
            row["first_violation_step"] = r.first_violation_step
            row["last_violation_step"] = r.last_violation_step
            row["violations"] = [
                v.to_json() for v in examples.get(r.invariant.id, [])[:MAX_EXAMPLES_PER_INVARIANT]
            ]
            failed.append(row)
        elif r.triggered:
            passed.append(row)
        else:
            not_triggered.append(row)
    try:
        for name, rows in (("failed.log", failed), ("passed.log", passed),
                           ("not_triggered.log", not_triggered)):  # fmt: skip
            (outdir / name).write_text(
                "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
            )
        (outdir / "violations_summary.json").write_text(
            json.dumps(_summary(results, violations), indent=2, sort_keys=True) + "\n"
        )
    except OSError as exc:
        raise UserError(f"cannot write to {outdir}: {exc.strerror or exc}") from None


def _summary(results: list[InvariantResult], violations: list[Violation]) -> dict:
    violated = [r for r in results if r.violated]
    return {
        "first_violation_step": min((v.step for v in violations), default=None),
        "total_violations": len(violations),
        "distinct_invariants_violated": len(violated),
        "invariants_checked": len(results),
        "violations": [
            {
                "invariant_id": r.invariant.id,
                "display_name": r.invariant.text_description,
                "relation_type": r.invariant.relation,
                "first_step": r.first_violation_step,
                "last_step": r.last_violation_step,
                "occurrences": r.violated,
            }
            for r in sorted(violated, key=lambda r: (r.first_violation_step, r.invariant.id))
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
