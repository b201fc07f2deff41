"""The options that shape what the tracer traces, shared by ``traincheck-run`` and
``traincheck-collect`` (one set of flags, one plan, one code path).

They become a :class:`~traincheck.tracing_plan.TracingPlan`, which the launcher
writes as JSON into the private run directory and names in ``TRAINCHECK_PLAN``.
No plan (None) means full tracing with the tracer's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from traincheck import environment
from traincheck.errors import UserError
from traincheck.tracing_plan import TRACE_PLAN_FILE, TracingPlan

PLAN_FILE = "plan.json"
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


def tracing_plan(
    args: argparse.Namespace, invariants: Path | None, *, selective: bool
) -> TracingPlan | None:
    """The plan the flags ask for; None when they ask for nothing beyond the defaults."""
    interval = _at_least(args.sampling_interval, 1, "--sampling-interval")
    warm_up = _at_least(args.warm_up_steps, 0, "--warm-up-steps")
    modules = tuple(m for m in args.modules_to_instr or () if m != DEFAULT_MODULE)
    models = tuple(args.models_to_track) if args.models_to_track else None
    if selective:
        if invariants is None:
            raise UserError("selective tracing needs --invariants")
        from traincheck.analysis.instrumentation import tracing_plan as plan_for
        from traincheck.analysis.invariants_file import load_invariants

        return plan_for(
            load_invariants(invariants),
            modules_to_instr=modules,
            models_to_track=models,
            sampling_interval=interval,
            warm_up_steps=warm_up,
        )
    plan = TracingPlan(
        modules_to_instr=modules,
        models_to_track=models,
        sampling_interval=interval,
        warm_up_steps=warm_up,
    )
    return None if plan == TracingPlan() else plan


def write_plan(plan: TracingPlan, run_dir: Path, env: dict[str, str]) -> None:
    """Write the plan into the private run directory and point the job's environment at it."""
    path = run_dir / PLAN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(plan.to_json(), handle)
    env[environment.TRAINCHECK_PLAN] = str(path)


def record_plan(plan: TracingPlan | None, trace_dir: Path) -> None:
    """Keep the plan inside the trace (None: full tracing), before the sidecar starts,
    so the live check and any later ``traincheck-check`` know what the run could not
    have traced and report those invariants as uncheckable."""
    try:
        text = json.dumps((plan or TracingPlan()).to_json(), indent=2, sort_keys=True)
        (trace_dir / TRACE_PLAN_FILE).write_text(text + "\n")
    except OSError as exc:
        raise UserError(f"cannot write {trace_dir / TRACE_PLAN_FILE}: {exc.strerror}") from None


def _at_least(value: int | None, minimum: int, flag: str) -> int:
    if value is None:
        return minimum
    if value < minimum:
        raise UserError(f"{flag} must be an integer >= {minimum}")
    return value
