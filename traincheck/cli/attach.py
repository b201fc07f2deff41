"""``traincheck-attach`` and ``traincheck-ps``: find traced jobs, attach a sidecar to one.

``traincheck-attach PID|RUN_ID`` binds the job's socket (the same ipc path its
tracer PUSHes to, so ZeroMQ reconnects every rank by itself), takes in the
recent history each tracer kept in its backlog, stores it in the job's trace
directory (new segments next to the old ones) and checks it live against
``--invariants``, printing alerts here. It stops on its own when the job ends;
Ctrl-C detaches: the job keeps running and can be attached again. An attached
sidecar continuing a trace reads which batch the trace last stored for each
process, so batches lost in between show up as ``batches_missing``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from traincheck.cli.jobs import TracedJob, describe_age, find_jobs, select_job
from traincheck.cli_scaffold import CommandParser, run_main
from traincheck.errors import EXIT_OK, EXIT_VIOLATIONS, UserError
from traincheck.events import UNKNOWN_RANK
from traincheck.private_files import ensure_private_dir
from traincheck.run_summary import summary_lines
from traincheck.sidecar.live_check import LiveCheck, emit_alert, load_invariant_set
from traincheck.sidecar.receiver import IntakeLedger, ipc_socket_path
from traincheck.sidecar.service import (
    POLL_INTERVAL_S,
    DrainRequest,
    Sidecar,
    SidecarOptions,
    ignore_file_size_limit,
    make_trace_dir,
)
from traincheck.sidecar.store import last_stored_seqs
from traincheck.tracedir import TraceDir

if TYPE_CHECKING:
    from traincheck.analysis.invariants import InvariantSet

PROG = "traincheck-attach"
PS_PROG = "traincheck-ps"
DETACH_DRAIN_S = 1.0
"""On Ctrl-C, how long to keep taking in what is already in flight before leaving."""


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        description="Attach a sidecar to a running traced job (started with "
        "traincheck-run --detached, or whose sidecar died): store and check its events "
        "from now on, with the recent history its tracer kept. Ctrl-C detaches; the job "
        "keeps running.",
        exit_codes=(
            (EXIT_OK, "the job ended, or Ctrl-C detached from it"),
            (EXIT_VIOLATIONS, "with --fail-on-violation: invariant violations were found"),
        ),
    )
    parser.add_argument("target", nargs="?", help="pid (of any rank, or of its launcher) or run id")
    parser.add_argument("-i", "--invariants", type=Path, help="invariants file to check live")
    parser.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        help="trace directory (default: the job's own, continued in new segments)",
    )
    parser.add_argument("--list", action="store_true", help="list traced jobs and exit")
    parser.add_argument(
        "--fail-on-violation",
        action="store_true",
        help=f"exit {EXIT_VIOLATIONS} when invariant violations were found",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print every violated invariant in full instead of one block per finding",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, lambda: _attach_main(build_parser().parse_args(argv)))


def _attach_main(args: argparse.Namespace) -> int:
    if args.list:
        return list_jobs()
    if args.target is None:
        raise UserError("name a job to attach to (pid or run id); see traincheck-ps")
    invariants = load_invariant_set(args.invariants)  # the one parse, before anything else
    jobs, _ = find_jobs()
    job = select_job(args.target, jobs)
    if job.attached:
        raise UserError(
            f"run {job.run_id} already has a live sidecar (pid {job.sidecar_pid}); detach it first"
        )
    violations = attach(
        job,
        invariants=args.invariants,
        invariant_set=invariants,
        output_dir=args.output_dir,
        verbose=args.verbose,
    )
    return EXIT_VIOLATIONS if args.fail_on_violation and violations else EXIT_OK


def ps_main(argv: list[str] | None = None) -> int:
    """``traincheck-ps``: the traced jobs of this user, one row per process."""
    parser = CommandParser(
        prog=PS_PROG,
        description="List this user's traced jobs, one row per traced process: PID, "
        "RANK (rank/world size), RUN ID (what traincheck-attach also accepts), STARTED "
        "(how long ago), STEPS (optimizer steps so far), ATTACHED (whether a sidecar "
        "serves the job, with its pid) and COMMAND (script names shortened).",
        exit_codes=((EXIT_OK, "the list was printed (maybe empty)"),),
    )

    def body() -> int:
        parser.parse_args(argv)
        return list_jobs()

    return run_main(PS_PROG, body)


def list_jobs() -> int:
    jobs, warnings = find_jobs()
    for warning in warnings:
        print(f"{PS_PROG}: warning: skipped registry entry {warning}", file=sys.stderr)
    print(format_table(jobs))
    return 0


def format_table(jobs: list[TracedJob]) -> str:
    header = ("PID", "RANK", "RUN ID", "STARTED", "STEPS", "ATTACHED", "COMMAND")
    rows = [header]
    for job in jobs:
        attached = f"yes (pid {job.sidecar_pid})" if job.attached else "no"
        for entry in job.entries:
            rows.append(
                (
                    str(entry.pid),
                    f"{'?' if entry.rank == UNKNOWN_RANK else entry.rank}/{entry.world_size}",
                    job.run_id,
                    describe_age(entry.started_wall_s),
                    str(entry.steps),
                    attached,
                    shorten_command(entry.argv),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in rows
    ]
    if not jobs:
        lines.append("(no traced jobs running)")
    return "\n".join(lines)


def shorten_command(argv: list[str], limit: int = 60) -> str:
    """The command as a person recognises it within ``limit`` characters.

    A deep checkout path would otherwise push the script's name past the cut, so
    paths are reduced to their file names before anything is truncated.
    """
    command = " ".join(argv)
    if len(command) <= limit:
        return command
    command = " ".join(
        os.path.basename(arg) if os.sep in arg and not arg.startswith("-") else arg for arg in argv
    )
    return command if len(command) <= limit else command[: limit - 3] + "..."


def say(message: str) -> None:
    emit_alert(f"{PROG}: {message}")


def attach(
    job: TracedJob,
    *,
    invariants: Path | None,
    invariant_set: InvariantSet | None,
    output_dir: Path | None,
    verbose: bool = False,
) -> int:
    """Serve the job until it ends (its processes said RunEnd or died) or Ctrl-C; return
    the number of violations found.

    The checker joins the job somewhere inside a step: it judges each process from
    its next step boundary on (the calls before it were made before we came)."""
    trace_dir = output_dir or default_trace_dir(job)
    trace = TraceDir(trace_dir)
    drain = DrainRequest()
    signal.signal(signal.SIGINT, drain.on_signal)
    signal.signal(signal.SIGTERM, drain.on_signal)
    ignore_file_size_limit()
    make_trace_dir(trace_dir)
    socket_path = ipc_socket_path(job.endpoint)
    if socket_path is not None:
        ensure_private_dir(Path(socket_path).parent)
    options = SidecarOptions(
        trace_dir=trace_dir,
        endpoint=job.endpoint,
        run_id=job.run_id,
        invariants=invariants.resolve() if invariants else None,
        command=list(job.entries[0].argv),
        attach=True,
        verbose=verbose,
    )
    # The plan the job's launcher recorded says what the run could not trace.
    check = LiveCheck(
        invariant_set, trace, trace.recorded_plan(), verbose=verbose, joined_mid_run=True
    )
    sidecar = Sidecar(options, check)
    host = socket.gethostname()
    for entry in job.entries:
        sidecar.ledger.expect(entry.pid, entry.rank, host)
    resume_ledger(sidecar.ledger, trace_dir, job.run_id)
    sidecar.write_manifest("running")
    say(
        f"attached to run {job.run_id}: {len(job.entries)} process(es) "
        f"(pid {', '.join(map(str, job.pids))}); trace: {trace_dir}; "
        "Ctrl-C detaches, the job keeps running"
    )
    serve_until_job_ends(sidecar, drain)
    detached = drain.is_set()
    if detached:
        take_in_flight(sidecar)
    else:
        sidecar.drain()
    summary = sidecar.finish(detached=detached)
    for line in summary_lines(summary, trace_dir):
        say(line)
    return summary.violations


def default_trace_dir(job: TracedJob) -> Path:
    if job.trace_dir:
        return Path(job.trace_dir)
    return Path(f"traincheck_attach_{job.run_id}").resolve()


def serve_until_job_ends(sidecar: Sidecar, drain: DrainRequest) -> None:
    """Receive until Ctrl-C, or until no process of the job may still send."""
    next_check = time.monotonic() + 1.0
    while not drain.is_set():
        sidecar.receive_once(POLL_INTERVAL_S)
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + 1.0
            if not sidecar.ledger.unfinished_alive():
                return


def take_in_flight(sidecar: Sidecar) -> None:
    """Before detaching, keep what already reached our socket (bounded)."""
    deadline = time.monotonic() + DETACH_DRAIN_S
    while time.monotonic() < deadline and sidecar.receive_once(0.05):
        pass


def resume_ledger(ledger: IntakeLedger, trace_dir: Path, run_id: str) -> None:
    """Tell the ledger which batch the trace already holds per process, so the
    batches lost before this attach are counted as missing."""
    for (pid, rank), seq in last_stored_seqs(trace_dir, run_id).items():
        if pid in ledger.producers:
            ledger.resume(pid, rank, seq)


if __name__ == "__main__":
    sys.exit(main())
