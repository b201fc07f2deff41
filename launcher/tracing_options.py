"""The options that shape what the tracer traces, shared by ``traincheck-run`` and
``traincheck-collect`` (one set of flags, one plan, one code path).

They become a :class:`~traincheck.tracing_plan.TracingPlan`, which the launcher
writes as JSON into the private run directory and names in ``TRAINCHECK_PLAN``.
No plan (None) means full tracing with the tracer's defaults. Selective tracing
(only what the invariants need) is decided by the sidecar, which parses the
invariants file anyway (:mod:`traincheck.sidecar.run_plan`): the launcher never
reads that file, so a run parses it once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from traincheck.errors import UserError
from traincheck.tracedir import TraceDir
from traincheck.tracing_plan import TracingPlan, write_plan_file

DEFAULT_MODULE = "torch"
"""``--modules-to-instr torch`` names the built-in training APIs: the default, no plan."""


def add_tracing_arguments(parser: argparse.ArgumentParser, *, selective_flag: bool) -> None:
    """The tracing flags; ``selective_flag`` adds ``--selective`` (traincheck-run only:
    traincheck-collect is selective whenever it is given invariants)."""
    group = parser.add_argument_group("what to trace")
    if selective_flag:
        group.add_argument(
            "--selective",
            action="store_true",
            help="trace only what the --invariants need (APIs, variables, arguments)",
        )
    group.add_argument(
        "--modules-to-instr",
        nargs="+",
        metavar="MODULE",
        default=None,
        help="modules whose public functions are traced (default: torch, i.e. the "
        "built-in training APIs; e.g. torch.nn.functional or your own package)",
    )
    group.add_argument(
        "--models-to-track",
        nargs="+",
        metavar="NAME",
        default=None,
        help="record state only for these models: root class name (Net) or a "
        "parameter-name prefix (Net.fc1) (default: every model found)",
    )
    group.add_argument(
        "--sampling-interval",
        type=int,
        default=None,
        metavar="N",
        help="after the warm-up steps, record every N-th optimizer step (default: 1)",
    )
    group.add_argument(
        "--warm-up-steps",
        type=int,
        default=None,
        metavar="N",
        help="record every one of the first N optimizer steps (default: 0)",
    )
    group.add_argument(
        "--module-depth",
        type=int,
        default=None,
        metavar="N",
        help="trace module calls down to N levels below the outermost one (default: "
        "every level; 0: the outermost call only)",
    )


def tracing_plan(
    args: argparse.Namespace, invariants: Path | None, *, selective: bool
) -> TracingPlan | None:
    """The plan the flags ask for; None when they ask for nothing beyond the defaults.
    With ``selective`` the sidecar narrows it to what the invariants need."""
    interval = _at_least(args.sampling_interval, 1, "--sampling-interval")
    warm_up = _at_least(args.warm_up_steps, 0, "--warm-up-steps")
    depth = getattr(args, "module_depth", None)
    if depth is not None:
        depth = _at_least(depth, 0, "--module-depth")
    if selective and invariants is None:
        raise UserError("selective tracing needs --invariants")
    plan = TracingPlan(
        modules_to_instr=tuple(m for m in args.modules_to_instr or () if m != DEFAULT_MODULE),
        models_to_track=tuple(args.models_to_track) if args.models_to_track else None,
        sampling_interval=interval,
        warm_up_steps=warm_up,
        module_depth=depth,
    )
    return None if plan == TracingPlan() else plan


def record_plan(plan: TracingPlan | None, trace: TraceDir) -> None:
    """Keep the plan inside the trace (None: full tracing), before the job starts, so
    a later ``traincheck-check`` knows what the run could not have traced. The
    sidecar does this when there is one; a ``--detached`` run has none."""
    try:
        write_plan_file(trace.tracing_plan, plan or TracingPlan())
    except OSError as exc:
        raise UserError(f"cannot write {trace.tracing_plan}: {exc.strerror}") from None


def _at_least(value: int | None, minimum: int, flag: str) -> int:
    if value is None:
        return minimum
    if value < minimum:
        raise UserError(f"{flag} must be an integer >= {minimum}")
    return value
