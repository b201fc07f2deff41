"""The run's tracing plan, decided by the sidecar with the invariants it parsed.

The launcher writes the plan its flags ask for (modules, models, sampling) into
the private run directory and names the file with ``--plan-file``; it never
reads the invariants file itself. With ``--selective`` the sidecar narrows that
plan to what the invariants need, from the one parse of the file that also feeds
the live check, and writes it back for the tracer. Either way it records the
plan in the trace (``TraceDir.tracing_plan``) before saying it is ready, so the
job starts with it and every later check knows what the run could not trace.

The ``instrumentation`` section ``traincheck-infer`` writes beside the invariants
is not read: it lacks what the plan needs (which arguments need content digests),
and the plan is derived from the parsed invariants at no extra parse.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from traincheck.errors import UserError
from traincheck.tracedir import TraceDir
from traincheck.tracing_plan import TracingPlan, load_plan, write_plan_file

if TYPE_CHECKING:
    from traincheck.analysis.invariants import InvariantSet


def read_base_plan(plan_file: Path | None) -> TracingPlan:
    """The plan the launcher's flags asked for (no file: full tracing)."""
    if plan_file is None:
        return TracingPlan()
    try:
        return load_plan(plan_file)
    except OSError as exc:
        raise UserError(f"cannot read --plan-file {plan_file}: {exc.strerror}") from None
    except ValueError as exc:
        raise UserError(f"--plan-file {plan_file}: {exc}") from None


def decide_plan(
    base: TracingPlan, invariants: InvariantSet | None, *, selective: bool
) -> TracingPlan:
    """``base``, or with ``selective`` only what ``invariants`` need, keeping the
    base plan's modules, models and sampling."""
    if not selective:
        return base
    if invariants is None:
        raise UserError("selective tracing needs --invariants")
    from traincheck.analysis.instrumentation import tracing_plan

    return tracing_plan(
        invariants,
        modules_to_instr=base.modules_to_instr,
        models_to_track=base.models_to_track,
        sampling_interval=base.sampling_interval,
        warm_up_steps=base.warm_up_steps,
        module_depth=base.module_depth,
    )


def publish_plan(plan: TracingPlan, trace: TraceDir, plan_file: Path | None) -> None:
    """Record ``plan`` in the trace, and hand it to the tracer through ``plan_file``."""
    for path in (trace.tracing_plan, plan_file):
        if path is None:
            continue
        try:
            write_plan_file(path, plan)
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
