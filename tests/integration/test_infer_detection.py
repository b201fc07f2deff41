"""Real pipelines: the relations added for silent bugs catch them, and stay silent on health.

For each example: two healthy runs are traced through the real launcher and
sidecar, invariants are inferred with the installed ``traincheck-infer``, then a
healthy run with another seed and batch size and the buggy run are checked with
``traincheck-check``. Steps are few (12) to keep the suite fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import EXAMPLES, cli, python_cmd, run_cli, trace_and_infer

STEPS = "12"
CASES = {
    "frozen_parameters": "StateAtCallRelation",
    "double_update": "SingleUpdateRelation",
    "eval_mode_left_on": "ConsistentInputRelation",
    "autocast_not_applied": "ConsistentOutputRelation",
    "ddp_replicas_drift": "ConsistencyRelation",
    "ddp_same_batches": "DistinctArgumentRelation",
}
TRIGGER_STEPS = {
    pair["name"]: pair["trigger_step"]
    for pair in json.loads((EXAMPLES / "suite.json").read_text())["pairs"]
}
"""First step whose code path differs from the healthy one (examples/silent_bugs/suite.json)."""


def _trace(out: Path, script: Path, *args: str) -> Path:
    cmd = [cli("traincheck-run"), "--output-dir", str(out), "--", *python_cmd(script, *args)]
    result = run_cli(cmd)
    assert result.returncode == 0, result.stderr
    return out


def _violated_relations(trace: Path, invariants: Path, out: Path) -> dict[str, int]:
    """The relations that fired, each with the first step it fired at."""
    cmd = [cli("traincheck-check"), "-f", str(trace), "-i", str(invariants), "-o", str(out)]
    result = run_cli(cmd)
    assert result.returncode in (0, 1), result.stderr
    summary = json.loads((out / "violations_summary.json").read_text())
    first: dict[str, int] = {}
    for v in summary["violations"]:
        first[v["relation_type"]] = min(v["first_step"], first.get(v["relation_type"], 1 << 30))
    return first


@pytest.mark.timeout(180)
@pytest.mark.parametrize("example", sorted(CASES))
def test_bug_caught_and_healthy_variant_silent(example: str, tmp_path: Path) -> None:
    folder = EXAMPLES / example
    inferred = trace_and_infer(tmp_path, folder / "healthy.py", [1, 2], steps=int(STEPS))
    variant = _trace(tmp_path / "variant", folder / "healthy.py", "--seed", "3",
                     "--batch-size", "16", "--steps", STEPS)  # fmt: skip
    assert _violated_relations(variant, inferred.invariants, tmp_path / "check-variant") == {}
    buggy = _trace(tmp_path / "buggy", folder / "buggy.py", "--seed", "3", "--steps", STEPS)
    fired = _violated_relations(buggy, inferred.invariants, tmp_path / "check-buggy")
    assert CASES[example] in fired
    assert 0 <= fired[CASES[example]] - TRIGGER_STEPS[example] <= 1, "caught within one step"
