"""The broader tracing, end to end: sub-module calls, GradScaler ordering, data order.

Two healthy runs of ``scripts/amp_data_train.py`` (GradScaler, autocast, clipping,
a DistributedSampler) are traced through the real launcher and sidecar and
inferred with the installed ``traincheck-infer``; a healthy variant with another
seed, batch size and width must raise nothing, and each seeded bug must be caught
by the relation that speaks of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SCRIPTS, Inferred, cli, python_cmd, run_cli, trace_and_infer

from traincheck.events import ApiCall
from traincheck.sidecar.store import read_trace

SCRIPT = SCRIPTS / "amp_data_train.py"
STEPS = 30


@pytest.fixture(scope="module")
def inferred(tmp_path_factory: pytest.TempPathFactory) -> Inferred:
    return trace_and_infer(tmp_path_factory.mktemp("amp_data"), SCRIPT, [1, 2], steps=STEPS)


def _trace(out: Path, *args: str) -> Path:
    cmd = [cli("traincheck-run"), "--output-dir", str(out), "--", *python_cmd(SCRIPT, *args)]
    result = run_cli(cmd)
    assert result.returncode == 0, result.stderr
    return out


def _violations(trace: Path, invariants: Path, out: Path) -> list[dict[str, object]]:
    cmd = [cli("traincheck-check"), "-f", str(trace), "-i", str(invariants), "-o", str(out)]
    result = run_cli(cmd)
    assert result.returncode in (0, 1), result.stderr
    return list(json.loads((out / "violations_summary.json").read_text())["violations"])


def _invariant_texts(inferred: Inferred) -> list[str]:
    document = json.loads(inferred.invariants.read_text())
    return [inv["text_description"] for inv in document["invariants"]]


@pytest.mark.timeout(300)
def test_grad_scaler_ordering_is_inferred(inferred: Inferred) -> None:
    texts = _invariant_texts(inferred)
    unscale, clip = "torch.amp.GradScaler.unscale_", "torch.nn.utils.clip_grad_norm_"
    step, update = "torch.amp.GradScaler.step", "torch.amp.GradScaler.update"
    assert any(unscale in t and clip in t and t.index(unscale) < t.index(clip) for t in texts)
    assert any(step in t and update in t and t.index(step) < t.index(update) for t in texts)
    assert any("the i-th batch of each epoch" in t for t in texts)


@pytest.mark.timeout(300)
def test_healthy_variant_with_other_sizes_raises_nothing(
    inferred: Inferred, tmp_path: Path
) -> None:
    variant = _trace(tmp_path / "variant", "--seed", "3", "--batch-size", "8", "--width", "48",
                     "--steps", str(STEPS))  # fmt: skip
    assert _violations(variant, inferred.invariants, tmp_path / "check") == []


@pytest.mark.timeout(300)
def test_clipping_before_unscale_is_caught(inferred: Inferred, tmp_path: Path) -> None:
    buggy = _trace(
        tmp_path / "buggy", "--seed", "3", "--steps", "12", "--bug", "clip-before-unscale"
    )
    violations = _violations(buggy, inferred.invariants, tmp_path / "check")
    ordering = [
        v
        for v in violations
        if v["relation_type"] in ("FunctionLeadRelation", "FunctionCoverRelation")
    ]
    assert any("unscale_" in str(v["display_name"]) for v in ordering), violations


@pytest.mark.timeout(300)
def test_an_epoch_order_repeated_is_caught_by_data_order(
    inferred: Inferred, tmp_path: Path
) -> None:
    buggy = _trace(tmp_path / "buggy", "--seed", "3", "--steps", str(STEPS), "--bug", "same-order")
    violations = _violations(buggy, inferred.invariants, tmp_path / "check")
    data_order = [v for v in violations if v["relation_type"] == "DataOrderRelation"]
    assert data_order, violations
    assert min(int(str(v["first_step"])) for v in data_order) == 160 // 16  # second epoch


@pytest.mark.timeout(300)
def test_a_sub_layer_left_in_eval_is_visible_and_caught(inferred: Inferred, tmp_path: Path) -> None:
    buggy = _trace(tmp_path / "buggy", "--seed", "3", "--steps", "12", "--bug", "eval-sublayer")
    calls = [
        s.event
        for s in read_trace(buggy).events()
        if isinstance(s.event, ApiCall) and s.event.api == "torch.nn.Module.forward"
    ]
    training = {
        (str(args["name"].value), args["training"].value)
        for args in ({a.name: a for a in c.args} for c in calls)
    }
    assert training == {
        ("MLP.block", True),
        ("MLP.block.fc", True),
        ("MLP.block.drop", False),
        ("MLP.head", True),
    }
    violations = _violations(buggy, inferred.invariants, tmp_path / "check")
    assert any(
        v["relation_type"] == "ConsistentInputRelation"
        and "Module.forward" in str(v["display_name"])
        for v in violations
    ), violations
