"""``traincheck-run`` options: parsed once, validated at the edge, frozen.

Everything the user can get wrong is checked here, before any process starts, and
reported as a :class:`~traincheck.errors.UserError` (one line, exit code 2) --
except what is inside the invariants file: the sidecar parses it (once per run),
and a malformed file is reported the same way, before the job starts.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from traincheck.cli_scaffold import CommandParser
from traincheck.errors import EXIT_VIOLATIONS, InvariantsFileError, UserError
from traincheck.launcher.tracing_options import add_tracing_arguments, tracing_plan
from traincheck.tracing_plan import TracingPlan

PROG = "traincheck-run"
DEFAULT_SIDECAR_TIMEOUT_S = 30.0
_PYTHON_NAME = re.compile(r"^python(\d+(\.\d+)*)?$")
_PYTHON_OPTIONS_WITH_VALUE = {"-W", "-X", "--check-hash-based-pycs"}
JOB_EXIT_CODES = (
    ("N", "once the command ran: its own exit code (128+N when killed by signal N)"),
    (EXIT_VIOLATIONS, "with --fail-on-violation: the command exited 0 but broke invariants"),
)


@dataclass(frozen=True)
class RunSettings:
    """One traced run, as the user asked for it."""

    command: tuple[str, ...]
    output_dir: Path
    invariants: Path | None
    sidecar_timeout_s: float
    fail_on_violation: bool
    on_violation: str = "continue"
    """``stop``: interrupt the job (SIGINT) at the first live violation."""
    tracing_plan: TracingPlan | None = None
    """What the tracer traces (None: everything, the tracer's defaults)."""
    selective: bool = False
    verbose: bool = False
    """Print every violated invariant live instead of one block per finding."""
    """The sidecar narrows ``tracing_plan`` to what the invariants need."""
    detached: bool = False
    """Start no sidecar: the tracer keeps a bounded backlog for ``traincheck-attach``."""


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        usage=f"{PROG} [options] [--] COMMAND [ARGS...]",
        description=(
            "Run a PyTorch training command under TrainCheck: trace it into a trace "
            "directory and, with --invariants, check it live from a sidecar process. "
            "The command's output and exit code are passed through unchanged."
        ),
        epilog=(
            "Example: traincheck-run --invariants inv.json -- python train.py --lr 0.1\n"
            "Ctrl-C is forwarded to the command; a second Ctrl-C kills it."
        ),
        exit_codes=JOB_EXIT_CODES,
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        help="trace directory to create (default: ./traincheck_run_<script>_<YYYYmmdd_HHMMSS>); "
        "must be new or empty",
    )
    parser.add_argument(
        "-i", "--invariants", type=Path, help="invariants file (JSON) to check the run against live"
    )
    parser.add_argument(
        "--sidecar-timeout-s",
        type=float,
        default=DEFAULT_SIDECAR_TIMEOUT_S,
        metavar="S",
        help="how long to wait for the sidecar to start, and at the end how long it may go "
        "without progress while its live check finishes (default: %(default)s)",
    )
    parser.add_argument(
        "--fail-on-violation",
        action="store_true",
        help="exit 1 when the command exits 0 but invariant violations were reported",
    )
    parser.add_argument(
        "--on-violation",
        choices=("continue", "stop"),
        default="continue",
        help="what to do at the first live violation: keep training (default) or stop the "
        "command with SIGINT, as Ctrl-C would (needs --invariants)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print every violated invariant in full as it is found, instead of one block "
        "per finding (violations that share a cause)",
    )
    parser.add_argument(
        "--detached",
        action="store_true",
        help="start no sidecar: the job's tracer keeps a bounded ring of recent events "
        "until `traincheck-attach PID` connects (see traincheck-ps)",
    )
    add_tracing_arguments(parser, selective_flag=True)
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="the training command and its arguments"
    )
    return parser


def parse_settings(argv: list[str]) -> RunSettings:
    """Parse and validate the command line; raise UserError on any mistake."""
    args = build_parser().parse_args(argv)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UserError("no command given (usage: traincheck-run [options] -- python train.py)")
    validate_command(command)
    if not args.sidecar_timeout_s > 0:
        raise UserError("--sidecar-timeout-s must be a positive number of seconds")
    invariants = args.invariants
    if args.detached and (invariants is not None or args.on_violation == "stop"):
        raise UserError("--detached checks nothing itself; pass --invariants to traincheck-attach")
    if args.on_violation == "stop" and invariants is None:
        raise UserError("--on-violation stop needs --invariants (nothing is checked without them)")
    if invariants is not None:
        invariants = existing_invariants_file(invariants)
    output_dir = validate_output_dir(args.output_dir or default_output_dir(command))
    return RunSettings(
        command=tuple(command),
        output_dir=output_dir,
        invariants=invariants,
        sidecar_timeout_s=args.sidecar_timeout_s,
        fail_on_violation=args.fail_on_violation,
        on_violation=args.on_violation,
        tracing_plan=tracing_plan(args, invariants, selective=args.selective),
        selective=args.selective,
        verbose=args.verbose,
        detached=args.detached,
    )


def validate_command(command: list[str]) -> None:
    """The program must exist; for ``python script.py``, so must the script."""
    program = command[0]
    if shutil.which(program) is None:
        if os.sep in program and Path(program).exists():
            raise UserError(f"command is not executable: {program}")
        raise UserError(f"command not found: {program}")
    script = python_script(command)
    if script is not None and not Path(script).is_file():
        raise UserError(f"script not found: {script}")


def python_script(command: list[str]) -> str | None:
    """The script a ``python [options] script.py`` command runs, None if it runs none
    (``-m module``, ``-c code``, an interactive interpreter) or is not python."""
    if not _PYTHON_NAME.match(Path(command[0]).name):
        return None
    args = iter(command[1:])
    for arg in args:
        if arg in ("-m", "-c", "-") or arg.startswith(("-m", "-c")):
            return None
        if arg in _PYTHON_OPTIONS_WITH_VALUE:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def script_stem(command: tuple[str, ...] | list[str]) -> str:
    """A short name for the run: the script's stem, the module, or the program."""
    script = python_script(list(command))
    if script is not None:
        return Path(script).stem
    if "-m" in command[1:]:
        index = command.index("-m", 1)
        if index + 1 < len(command):
            return command[index + 1].rsplit(".", 1)[-1]
    return Path(command[0]).name


def default_output_dir(command: list[str]) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", script_stem(command)) or "job"
    return Path(f"traincheck_run_{stem}_{time.strftime('%Y%m%d_%H%M%S')}")


def validate_output_dir(output_dir: Path) -> Path:
    """The trace directory, resolved, if it can be ours alone; else a one-line error.

    Refused: a path that cannot be resolved (a symlink loop), a symbolic link (we
    never write through a link someone else may have planted), an existing
    directory that is not empty (two runs in one trace), not owned by us, or
    writable by others (another user could plant files in it).
    """
    try:
        if output_dir.is_symlink():
            raise UserError(f"output directory is a symbolic link: {output_dir}")
        resolved = output_dir.resolve()
        info = resolved.lstat() if resolved.exists() else None
    except (OSError, RuntimeError) as exc:  # RuntimeError: pathlib's symlink loop
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UserError(f"cannot use output directory {output_dir}: {reason}") from None
    if info is None:
        return resolved
    if not stat.S_ISDIR(info.st_mode):
        raise UserError(f"output path exists and is not a directory: {output_dir}")
    if info.st_uid != os.getuid():
        raise UserError(f"output directory belongs to another user: {output_dir}")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UserError(f"output directory is writable by other users: {output_dir}")
    if any(resolved.iterdir()):
        raise UserError(
            f"output directory is not empty: {output_dir} (one run per trace directory; "
            "pass a new --output-dir)"
        )
    return resolved


def existing_invariants_file(path: Path) -> Path:
    """The file, resolved, if there is one; its content is the sidecar's to parse."""
    if not path.is_file():
        raise InvariantsFileError(f"invariants file not found: {path}")
    return path.resolve()
