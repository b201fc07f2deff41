"""traincheck-collect --invariants traces exactly what the invariants need."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import EXAMPLES, Inferred, cli, run_cli

from traincheck.events import ApiCall, VarState
from traincheck.sidecar.store import read_trace


def _state_points(trace: Path, *, digests: bool = False) -> set:
    """``(api, phase)`` of every VarState (with ``digests``: ``((api, phase), has_digest)``)."""
    api_of: dict[tuple[int, int], str] = {}
    points = set()
    for stored in read_trace(trace).events():
        event = stored.event
        if isinstance(event, ApiCall):
            api_of[(stored.pid, event.call_id)] = event.api
        elif isinstance(event, VarState):
            point = (api_of[(stored.pid, event.call_id)], event.phase)
            points.add((point, event.digest is not None) if digests else point)
    return points


def _api_names(trace: Path) -> set[str]:
    return {s.event.api for s in read_trace(trace).events() if isinstance(s.event, ApiCall)}


def test_selective_collect_traces_only_the_needed_apis(
    zero_grad_invariants: Inferred, tmp_path: Path
) -> None:
    needed = json.loads(zero_grad_invariants.invariants.read_text())["instrumentation"]
    out = tmp_path / "selective"
    script = EXAMPLES / "missing_zero_grad" / "buggy.py"
    result = run_cli(
        [
            cli("traincheck-collect"),
            "-p",
            str(script),
            "--invariants",
            str(zero_grad_invariants.invariants),
            "-o",
            str(out),
            "--",
            "--steps",
            "6",
        ]
    )
    assert result.returncode == 0, result.stderr
    traced = _api_names(out)
    assert traced and traced <= set(needed["apis"])
    full = _api_names(zero_grad_invariants.traces[0])
    assert full - traced, "full tracing should record APIs the invariants do not need"
    has_state = any(isinstance(s.event, VarState) for s in read_trace(out).events())
    assert has_state == bool(needed["variables"])
    # Variable state only where an invariant reads it, digests only where one needs data.
    points = {(p["api"], p["phase"]): p["digest"] for p in needed["state_points"]}
    seen = _state_points(out)
    assert seen and seen <= set(points)
    digested = {point for point, digest in _state_points(out, digests=True) if digest}
    assert digested and digested == {point for point in seen if points[point]}
    assert "violation" in result.stderr.lower()


def test_invariants_a_selective_trace_cannot_judge_are_reported_uncheckable(
    zero_grad_invariants: Inferred, tmp_path: Path
) -> None:
    """A trace recorded for a few invariants, checked against all of them: the ones
    whose APIs were not traced land in uncheckable.log, never in failed.log."""
    from traincheck.analysis.invariants_file import dump_invariants, load_invariants

    everything = load_invariants(zero_grad_invariants.invariants)
    zero_grad = "torch.optim.Optimizer.zero_grad"
    few = type(everything)(
        tuple(
            inv
            for inv in everything
            if all(getattr(p, "api_full_name", "") != zero_grad for p in inv.params)
        )
    )
    assert 0 < len(few) < len(everything)
    few_path = tmp_path / "few.json"
    dump_invariants(few, few_path)
    out = tmp_path / "selective"
    script = EXAMPLES / "missing_zero_grad" / "healthy.py"
    command = [cli("traincheck-run"), "--selective", "--invariants", str(few_path), "-o"]
    result = run_cli([*command, str(out), "--", sys.executable, str(script), "--steps", "6"])
    assert result.returncode == 0, result.stderr

    checked = tmp_path / "checked"
    invariants = str(zero_grad_invariants.invariants)
    check = [cli("traincheck-check"), "-f", str(out), "-i", invariants, "-o", str(checked)]
    result = run_cli(check)
    assert result.returncode == 0, result.stdout + result.stderr
    uncheckable = [json.loads(line) for line in (checked / "uncheckable.log").open()]
    ids = {row["invariant"]["id"] for row in uncheckable}
    assert ids == {inv.id for inv in everything} - {inv.id for inv in few}
    assert all(row["uncheckable_reason"] for row in uncheckable)
    assert (checked / "failed.log").read_text() == ""
