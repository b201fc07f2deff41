"""``python -m traincheck.sidecar``: the sidecar process the launcher starts.

Not meant to be typed by hand (``traincheck-run`` starts it), but its options are
plain so it can be: see ``--help``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from traincheck.cli_scaffold import CommandParser, run_main
from traincheck.errors import EXIT_OK, UserError
from traincheck.private_files import read_capped
from traincheck.records import COMMAND_MAX_BYTES, decode_command

PROG = "traincheck-sidecar"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        description="Receive traced events, store them, check them live against invariants.",
        exit_codes=((EXIT_OK, "drained and summarised"),),
    )
    parser.add_argument("--trace-dir", required=True, type=Path, help="where to write the trace")
    parser.add_argument(
        "--endpoint", required=True, help="ZeroMQ endpoint to bind (ipc:// or tcp://)"
    )
    parser.add_argument("--run-id", required=True, help="reject batches of any other run")
    parser.add_argument("--invariants", type=Path, help="invariants file to check live")
    parser.add_argument(
        "--plan-file",
        type=Path,
        help="the tracer's plan (traincheck-plan JSON) in the private run directory; with "
        "--selective, rewritten with only what the invariants need",
    )
    parser.add_argument(
        "--selective",
        action="store_true",
        help="narrow the plan to what --invariants need (needs --invariants and --plan-file)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="alert every violated invariant in full instead of one block per finding",
    )
    parser.add_argument(
        "--command-file",
        type=Path,
        help="JSON file holding the traced command (a list of strings), recorded in run.json; "
        "a file rather than an argument so the job's command line never shows up in ours",
    )
    return parser


def read_command(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        return decode_command(read_capped(path, COMMAND_MAX_BYTES))
    except OSError as exc:
        raise UserError(f"cannot read --command-file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UserError(f"--command-file {path}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, lambda: serve(build_parser().parse_args(argv)))


def serve(args: argparse.Namespace) -> int:
    from traincheck.sidecar.service import SidecarOptions, refuse_to_start, run

    if args.selective and (args.invariants is None or args.plan_file is None):
        raise UserError("--selective needs --invariants and --plan-file")
    try:
        command = read_command(args.command_file)
    except UserError as exc:
        return refuse_to_start(str(exc))
    options = SidecarOptions(
        trace_dir=args.trace_dir,
        endpoint=args.endpoint,
        run_id=args.run_id,
        invariants=args.invariants,
        command=command,
        plan_file=args.plan_file,
        selective=args.selective,
        verbose=args.verbose,
    )
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
