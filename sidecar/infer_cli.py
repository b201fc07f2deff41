"""``traincheck-infer``: learn invariants from the traces of healthy runs.

User errors (missing or non-trace directory, unknown relation, unwritable
output) are one line on stderr and exit code 2; warnings about damaged trace
segments are one line each and do not stop inference.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from traincheck.sidecar.infer_engine import InferResult, infer
from traincheck.sidecar.invariants import dump_invariants
from traincheck.sidecar.relations.registry import relation_names, select_relations
from traincheck.sidecar.store import Trace, read_trace

from traincheck.errors import UserError

PROG = "traincheck-infer"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Infer training invariants from traces of healthy runs."
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
        default="invariants.json",
        type=Path,
        help="invariants file to write (default: invariants.json)",
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
        "--debug",
        action="store_true",
        help="also write every rejected hypothesis, with its reason, to OUTPUT.failed",
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
    try:
        relations = select_relations(args.enable_relation, args.disable_relation)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    _check_output(args.output)
    traces = [_read(path) for path in args.trace_folders]
    result = infer(traces, relations)
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


def _read(path: str) -> Trace:
    trace = read_trace(path)
    for warning in trace.warnings:
        print(f"{PROG}: warning: {path}: {warning}", file=sys.stderr)
    return trace


def _write_failed(result: InferResult, path: Path) -> None:
    lines = [json.dumps(r.to_json(), sort_keys=True) for r in result.rejections]
    path.write_text("".join(line + "\n" for line in lines))


def _print_summary(result: InferResult, traces: list[Trace], output: Path) -> None:
    per_relation = result.invariants_per_relation()
    print(f"{PROG}: {len(result.invariant_set)} invariants from {len(traces)} trace(s) -> {output}")
    for name in sorted(per_relation):
        print(f"  {name}: {per_relation[name]}")
    rejected = result.rejections_per_reason()
    if rejected:
        print(f"  hypotheses rejected: {sum(rejected.values())}")
        for (relation, reason), count in sorted(rejected.items()):
            print(f"    {relation}: {count} ({reason})")


if __name__ == "__main__":
    sys.exit(main())
