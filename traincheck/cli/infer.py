"""``traincheck-infer``: learn invariants from the traces of healthy runs.

User errors (missing or non-trace directory, unknown relation, unwritable
output) are one line on stderr and exit code 2 (:mod:`traincheck.cli_scaffold`);
warnings about damaged trace segments are one line each and do not stop inference.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from traincheck.analysis.infer_engine import InferResult, infer
from traincheck.analysis.invariants_file import dump_invariants
from traincheck.analysis.preconditions import TOO_SPECIFIC, UNSEPARABLE
from traincheck.analysis.relations.base import (
    DEFAULT_PRECOND_SAMPLING_THRESHOLD,
    IMPLIED,
    MIN_POSITIVE_EXAMPLES,
    TOO_FEW_POSITIVES,
    InferSettings,
)
from traincheck.analysis.relations.known import relation_names, select_relations
from traincheck.cli.infer_progress import trace_progress
from traincheck.cli_scaffold import CommandParser, run_main
from traincheck.errors import EXIT_OK, UserError
from traincheck.sidecar.store import TraceStream, open_trace
from traincheck.terminal_text import printable

PROG = "traincheck-infer"
BACKENDS = ("pandas",)
"""Kept for the published CLI's ``-b``: inference streams events through the
collectors and builds no DataFrame, so there is one back-end (polars was not
measured faster on a stream that never becomes a table, and is not offered)."""


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        description="Infer training invariants from traces of healthy runs.",
        exit_codes=((EXIT_OK, "the invariants file was written"),),
    )
    parser.add_argument(
        "-f",
        "--trace-folders",
        nargs="+",
        required=True,
        metavar="TRACE_DIR",
        help="trace directories of healthy runs; evidence is pooled across them",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        help="invariants file to write (required: nothing is written anywhere unless asked)",
    )
    parser.add_argument(
        "--enable-relation",
        nargs="+",
        metavar="R",
        default=None,
        help=f"infer only these relations ({', '.join(relation_names())})",
    )
    parser.add_argument(
        "--disable-relation",
        nargs="+",
        metavar="R",
        default=None,
        help="do not infer these relations (ignored with --enable-relation)",
    )
    parser.add_argument(
        "-b",
        "--backend",
        choices=BACKENDS,
        default="pandas",
        help="trace processing back-end (default and only: pandas; see docs/invariants.md)",
    )
    parser.add_argument(
        "--disable-precond-sampling",
        action="store_true",
        help="use every distinct example in precondition deduction, however many",
    )
    parser.add_argument(
        "--precond-sampling-threshold",
        type=_positive_int,
        default=DEFAULT_PRECOND_SAMPLING_THRESHOLD,
        metavar="N",
        help="sample distinct examples of a hypothesis beyond N "
        f"(default {DEFAULT_PRECOND_SAMPLING_THRESHOLD})",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="also write every rejected hypothesis, with its reason, to OUTPUT.failed",
    )
    return parser  # fmt: skip


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, lambda: _run(build_parser().parse_args(argv)))


def _run(args: argparse.Namespace) -> int:
    try:
        relations = select_relations(args.enable_relation, args.disable_relation)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    _check_output(args.output)
    traces = [_open(path) for path in distinct_folders(args.trace_folders)]
    settings = InferSettings(
        None if args.disable_precond_sampling else args.precond_sampling_threshold
    )
    with trace_progress(len(traces)) as advance:
        result = infer(traces, relations, settings, on_trace_done=advance)
    try:
        dump_invariants(result.invariant_set, args.output)
        if args.debug:
            _write_failed(result, Path(f"{args.output}.failed"))
    except OSError as exc:
        raise UserError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    _print_summary(result, traces, args.output)
    return 0


def _check_output(output: Path) -> None:
    """Fail before the (possibly long) inference if the result could not be written."""
    parent = output.parent if str(output.parent) else Path(".")
    if output.is_dir():
        raise UserError(f"output {output} is a directory")
    if not parent.is_dir():
        raise UserError(f"cannot write {output}: directory {parent} does not exist")


def distinct_folders(folders: Sequence[str]) -> list[str]:
    """The trace folders, each once: a trace given twice would count its evidence
    twice (the same run read as two healthy runs), so repeats are dropped, said."""
    seen: set[Path] = set()
    kept = []
    for folder in folders:
        key = Path(folder).resolve()
        if key in seen:
            print(printable(f"{PROG}: warning: {folder} given twice; read once"), file=sys.stderr)
            continue
        seen.add(key)
        kept.append(folder)
    return kept


def _open(path: str) -> TraceStream:
    """The trace at ``path``, checked now (a user error before inference starts) and
    read as inference streams it, with its warnings said as they are met."""
    return open_trace(
        path,
        on_warning=lambda warning: print(
            printable(f"{PROG}: warning: {path}: {warning}"), file=sys.stderr
        ),
    )


def _write_failed(result: InferResult, path: Path) -> None:
    lines = [json.dumps(r.to_json(), sort_keys=True) for r in result.rejections]
    path.write_text("".join(line + "\n" for line in lines))


SHORT_REASONS = {
    TOO_FEW_POSITIVES: "too few positives",
    UNSEPARABLE: "counter-examples",
    TOO_SPECIFIC: "too specific",
    IMPLIED: "implied",
}
"""Column words for the rejection reasons (``--debug`` writes the full text)."""


def _print_summary(result: InferResult, traces: list[TraceStream], output: Path) -> None:
    """One screen: invariants kept and hypotheses rejected (and why), per relation."""
    print(f"{PROG}: {len(result.invariant_set)} invariants from {len(traces)} trace(s) -> {output}")
    kept = result.invariants_per_relation()
    rejected = result.rejections_per_reason()
    names = sorted({*kept, *(relation for relation, _ in rejected)})
    width = max((len(n) for n in names), default=8)
    print(f"  {'relation':<{width}}  kept  rejected")
    for name in names:
        why = [
            f"{count} {SHORT_REASONS.get(reason, reason)}"
            for (relation, reason), count in sorted(rejected.items())
            if relation == name
        ]
        print(f"  {name:<{width}}  {kept.get(name, 0):4d}  {', '.join(why) or '-'}")
    if rejected:
        print(
            "  (too few positives: under "
            f"{MIN_POSITIVE_EXAMPLES} examples; counter-examples: no precondition explains "
            "the negative examples; too specific: the precondition would rest on too few; "
            "implied: a stronger invariant says it already; "
            "--debug lists each)"
        )


if __name__ == "__main__":
    sys.exit(main())
