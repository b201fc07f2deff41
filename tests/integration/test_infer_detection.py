"""Real pipelines: the relations added for silent bugs catch them, and stay silent on health.

For each example: one healthy run is traced through the real launcher and
sidecar (the one-reference protocol: a user often has a single healthy run),
invariants are inferred with the installed ``traincheck-infer``, then a healthy
run with another seed and batch size and the buggy run are checked with
``traincheck-check``. Steps are few (12) to keep the suite fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, SCRIPTS, cli, python_cmd, run_cli, trace_and_infer

from traincheck.events import VarState
from traincheck.sidecar.store import read_trace

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
    inferred = trace_and_infer(tmp_path, folder / "healthy.py", [1], steps=int(STEPS))
    variant = _trace(tmp_path / "variant", folder / "healthy.py", "--seed", "3",
                     "--batch-size", "16", "--steps", STEPS)  # fmt: skip
    assert _violated_relations(variant, inferred.invariants, tmp_path / "check-variant") == {}
    buggy = _trace(tmp_path / "buggy", folder / "buggy.py", "--seed", "3", "--steps", STEPS)
    fired = _violated_relations(buggy, inferred.invariants, tmp_path / "check-buggy")
    assert CASES[example] in fired
    assert 0 <= fired[CASES[example]] - TRIGGER_STEPS[example] <= 1, "caught within one step"


FROZEN_BACKBONE = SCRIPTS / "frozen_backbone.py"
"""A head fine-tuned on a frozen backbone, its decoder tied to its encoder (two names)."""


def _live_violations(out: Path, invariants: Path, *args: str) -> list[dict[str, Any]]:
    """Run the script under live checking; the violations the sidecar wrote at the end."""
    cmd = [cli("traincheck-run"), "--output-dir", str(out), "--invariants", str(invariants),
           "--", *python_cmd(FROZEN_BACKBONE, *args)]  # fmt: skip
    result = run_cli(cmd)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "live_check" / "violations_summary.json").read_text())
    return list(summary["violations"])


@pytest.mark.timeout(240)
def test_unfrozen_backbone_and_broken_tie_are_caught_live(tmp_path: Path) -> None:
    inferred = trace_and_infer(tmp_path, FROZEN_BACKBONE, [1, 2], steps=int(STEPS))
    learned = {
        inv["text_description"]
        for inv in json.loads(inferred.invariants.read_text())["invariants"]
        if inv["relation"] == "ConstantStateRelation"
    }
    assert "Tagger.scale.data never changes across torch.nn.Module.__call__ calls" in learned
    assert not any(text.startswith("Tagger.scale.requires_grad") for text in learned)
    wider = _live_violations(tmp_path / "variant", inferred.invariants,
                             "--seed", "3", "--width", "32", "--steps", STEPS)  # fmt: skip
    assert wider == [], "another seed and width: nothing to report"

    unfrozen = _live_violations(tmp_path / "unfreeze", inferred.invariants,
                                "--seed", "3", "--bug", "unfreeze", "--steps", STEPS)  # fmt: skip
    backbone = {"Tagger.backbone.0.weight", "Tagger.backbone.0.bias",
                "Tagger.backbone.2.weight", "Tagger.backbone.2.bias"}  # fmt: skip
    caught = [v for v in unfrozen if v["relation_type"] == "ConstantStateRelation"]
    assert {name for v in caught for name in v["variables"]} == backbone
    assert min(v["first_step"] for v in caught) == 0
    assert any("requires_grad is True" in str(v["what"]) for v in caught)

    untied = _live_violations(tmp_path / "untie", inferred.invariants,
                              "--seed", "3", "--bug", "untie", "--steps", STEPS)  # fmt: skip
    tie = [v for v in untied if v["relation_type"] == "EqualVariablesRelation"]
    assert tie and tie[0]["first_step"] == 2, "the tie breaks at step 2"
    assert set(tie[0]["variables"]) == {"Tagger.encode.weight", "Tagger.decode.weight"}


@pytest.mark.timeout(120)
def test_a_tie_by_one_parameter_object_is_one_name_with_the_other_path_as_alias(
    tmp_path: Path,
) -> None:
    """Hugging Face ties by sharing one Parameter, which ``named_parameters()`` lists
    once: the trace has one name (no pair for EqualVariables), and that variable's
    states carry the other path (what SharedParameter learns)."""
    out = _trace(tmp_path / "object", FROZEN_BACKBONE, "--tie-object", "--steps", "3")
    states = [s.event for s in read_trace(out).events() if isinstance(s.event, VarState)]
    names = {state.var_name for state in states}
    assert "Tagger.encode.weight" in names
    assert "Tagger.decode.weight" not in names
    aliases = {state.var_name: state.aliases for state in states if state.stage == "train"}
    assert aliases["Tagger.encode.weight"] == ("Tagger.decode.weight",)
    assert {name for name, paths in aliases.items() if paths} == {"Tagger.encode.weight"}
