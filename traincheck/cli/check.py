"""``traincheck-check``: check a stored trace against an invariants file.

It replays the stored events, in stored order, as they are read (one segment
window and one batch in memory at a time), through the same
:class:`~traincheck.analysis.checker.Checker` the sidecar feeds live, so offline
and live results cannot differ; alerts go through the same
:class:`~traincheck.analysis.alert_sink.AlertSink` (grouped, root cause first,
each invariant once with its count). ``--follow`` checks a trace that a sidecar
is still writing and ends when the run ends; ``traincheck-onlinecheck`` is the
same command with ``--follow`` implied.

Result files (``failed.log`` ... ``report.html``) go to ``-o``, by default a
timestamped folder beside the trace. Exit code: 1 when violations were found, 0
when none, otherwise as :mod:`traincheck.cli_scaffold` says (2: user error).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from traincheck.analysis.alert_sink import AlertSink, FindingSink
from traincheck.analysis.alerts import finding_lines
from traincheck.analysis.checker import Checker
from traincheck.analysis.instrumentation import uncheckable_invariants
from traincheck.analysis.invariants_file import load_invariants
from traincheck.analysis.results import (
    ViolationLedger,
    default_output_dir,
    run_description,
    write_results,
)
from traincheck.analysis.violations import Violation
from traincheck.cli_scaffold import CommandParser, run_main
from traincheck.errors import EXIT_OK, EXIT_VIOLATIONS, NotATraceError
from traincheck.records import ResultsSummary, RunManifest
from traincheck.sidecar.store import open_trace
from traincheck.terminal_text import printable
from traincheck.tracedir import TraceDir

PROG = "traincheck-check"
ONLINE_PROG = "traincheck-onlinecheck"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    description = (
        "Check a trace that is still being written, as it grows, against invariants: "
        "traincheck-check --follow under the published tool's name. It stops when the "
        "run ends (or after --follow-timeout-s)."
        if prog == ONLINE_PROG
        else "Check a stored trace against invariants (with --follow, one still being "
        "written). Prints one block per finding (violations that share a cause) and "
        "writes the result files and report.html."
    )
    parser = CommandParser(
        prog=prog,
        description=description,
        exit_codes=(
            (EXIT_OK, "no invariant was violated"),
            (EXIT_VIOLATIONS, "violations were found (see the result files)"),
        ),
    )
    parser.add_argument(
        "-f",
        "--trace-folder",
        required=True,
        type=Path,
        metavar="TRACE_DIR",
        help="the trace to check: a folder written by traincheck-run (or its sidecar)",
    )
    parser.add_argument(
        "-i",
        "--invariants",
        required=True,
        type=Path,
        metavar="FILE",
        help="the invariants to check it against, as written by traincheck-infer",
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=None,
        metavar="OUTDIR",
        help="folder for failed.log, passed.log, not_triggered.log, uncheckable.log, "
        "violations_summary.json and report.html (default: TRACE_DIR_check_<timestamp> "
        "beside the trace)",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="check a trace that is still being written, as it grows; stop when its run ends",
    )
    parser.add_argument(
        "--follow-timeout-s",
        type=float,
        default=None,
        metavar="S",
        help="with --follow, stop after S seconds even if the run goes on",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print every violated invariant in full instead of one block per finding",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    return run_main(prog, lambda: _run(build_parser(prog).parse_args(argv)))


def online_main(argv: Sequence[str] | None = None) -> int:
    """``traincheck-onlinecheck``: the seeds' name for the semi-online mode, i.e.
    ``traincheck-check --follow`` (one code path, so the two cannot drift apart)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--follow" not in args:
        args.append("--follow")
    return main(args, prog=ONLINE_PROG)


def _run(args: argparse.Namespace) -> int:
    invariant_set = load_invariants(args.invariants)
    checker = Checker(
        invariant_set,
        uncheckable=uncheckable_invariants(
            invariant_set, TraceDir(args.trace_folder).recorded_plan()
        ),
    )
    ledger = ViolationLedger()
    color = _stdout_is_terminal()
    sink = (
        AlertSink(_write_stdout, color=color, running_counts=args.follow)
        if args.verbose
        else FindingSink(_write_stdout, api_calls=lambda: checker.api_calls, color=color)
    )
    damage: list[str] = []
    if args.follow:
        from traincheck.cli.follow import follow_trace

        _require_trace_dir(args.trace_folder)
        for warning in follow_trace(
            args.trace_folder, checker, ledger, sink, timeout_s=args.follow_timeout_s
        ):
            damage.append(warning)
            print(printable(f"{PROG}: warning: {args.trace_folder}: {warning}"), file=sys.stderr)
    else:
        trace = open_trace(
            args.trace_folder,
            on_warning=lambda warning: print(
                printable(f"{PROG}: warning: {args.trace_folder}: {warning}"), file=sys.stderr
            ),
        )
        for stored in trace.events():
            _take(checker.feed(stored), ledger, sink)
        _take(checker.finish(), ledger, sink)
        damage = list(trace.warnings)
    sink.close()
    outdir = args.output_dir or default_output_dir(args.trace_folder)
    summary = write_results(
        outdir,
        checker.results(),
        ledger,
        title=f"{PROG}: {args.trace_folder}",
        api_calls=checker.api_calls,
        run=run_description(
            _manifest(args.trace_folder),
            trace_dir=args.trace_folder,
            invariants=args.invariants,
            last_step=checker.current_step,
            loss_by_step=checker.losses.points(),
        ),
        damage=damage,
    )
    for line in finding_lines(summary):
        print(line)
    print(summary_line(summary))
    print(f"{PROG}: results in {outdir}")
    return EXIT_VIOLATIONS if ledger.total else EXIT_OK


def _take(violations: list[Violation], ledger: ViolationLedger, sink: AlertSink) -> None:
    for violation in violations:
        ledger.add(violation)
        sink.add(violation)


def summary_line(summary: ResultsSummary) -> str:
    """The CLI's one-line verdict; every number is one of ``violations_summary.json``."""
    outcomes = summary.outcomes
    first = summary.first_violation_step
    return (
        f"{PROG}: {summary.total_violations} violations of "
        f"{summary.distinct_invariants_violated} invariants"
        f"{f' (first at step {first})' if first is not None else ''}; "
        f"{summary.invariants_checked} invariants: {outcomes.failed} failed, "
        f"{outcomes.passed} passed, {outcomes.not_triggered} not triggered, "
        f"{outcomes.uncheckable} uncheckable"
        + (
            f"; the trace is damaged ({len(summary.damage)} place(s) skipped, see the "
            "warnings above)"
            if summary.damage
            else ""
        )
    )


def _manifest(trace_dir: Path) -> RunManifest | None:
    """The trace's run.json, for the report's description of the run (None when it is
    missing or unreadable: the check itself never depends on it)."""
    try:
        return TraceDir(trace_dir).read_manifest()
    except (OSError, ValueError):
        return None


def _require_trace_dir(path: Path) -> None:
    if not path.is_dir():
        raise NotATraceError(f"trace directory not found: {path}")
    trace = TraceDir(path)
    if not trace.holds_trace():
        raise NotATraceError(f"{path} is not a TrainCheck trace (no {trace.manifest.name})")


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _stdout_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdout.fileno())
    except (OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
