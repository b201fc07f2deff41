"""Optimizer settings end to end: ranges and param-group facts learned from real runs.

Two healthy runs of ``scripts/accumulate_two_groups.py`` (gradient accumulation,
two param groups, a hand-written lr schedule) are traced through the real
launcher and sidecar and NumericRange and ConsistentInput invariants are inferred
from them; then runs are checked live (``traincheck-run --invariants``) and judged
from the sidecar's result files: a healthy variant with twice the lr and twice the
batch size raises nothing, and the three seeded bugs are caught at the first step
(the decay groups swapped through the ``weight_decay[<kind>]`` arguments of
``Optimizer.step``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SCRIPTS, cli, python_cmd, run_cli

SCRIPT = SCRIPTS / "accumulate_two_groups.py"
RELATION = "NumericRangeRelation"
INPUT_RELATION = "ConsistentInputRelation"
RUN_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def invariants(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("numeric_range")
    traces = []
    for seed in (1, 2):
        out = tmp / f"healthy-seed{seed}"
        job = python_cmd(SCRIPT, "--seed", str(seed))
        cmd = [cli("traincheck-run"), "-o", str(out), "--", *job]
        result = run_cli(cmd, timeout_s=RUN_TIMEOUT_S)
        assert result.returncode == 0, result.stderr
        traces.append(str(out))
    path = tmp / "invariants.json"
    relations = ("--enable-relation", RELATION, INPUT_RELATION)
    infer = [cli("traincheck-infer"), "-f", *traces, "-o", str(path), *relations]
    result = run_cli(infer, timeout_s=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    return path


def _live(tmp: Path, invariants: Path, *args: str) -> dict:
    out = tmp / "checked"
    cmd = [cli("traincheck-run"), "-o", str(out), "-i", str(invariants), "--",
           *python_cmd(SCRIPT, "--seed", "3", *args)]  # fmt: skip
    result = run_cli(cmd, timeout_s=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "live_check" / "violations_summary.json").read_text())


def _first_steps(summary: dict) -> dict[str, int]:
    return {v["display_name"]: v["first_step"] for v in summary["violations"]}


@pytest.mark.timeout(600)
def test_learns_the_loss_bound_and_the_group_ratio(invariants: Path) -> None:
    texts = [i["text_description"] for i in json.loads(invariants.read_text())["invariants"]]
    assert any(t.startswith("torch.Tensor.backward: loss stays at most") for t in texts), texts
    assert "torch.optim.Optimizer.step: lr[1] / lr stays within [1, 1]" in texts
    assert not any(t.startswith("torch.optim.Optimizer.step: lr stays") for t in texts)


@pytest.mark.timeout(600)
def test_healthy_variant_with_twice_the_lr_and_batch_raises_nothing(
    invariants: Path, tmp_path: Path
) -> None:
    summary = _live(tmp_path, invariants, "--lr", "0.1", "--batch-size", "32")
    assert summary["outcomes"]["passed"] >= 4, summary["outcomes"]
    assert summary["total_violations"] == 0, summary["violations"]


@pytest.mark.timeout(600)
def test_loss_not_divided_by_the_accumulation_steps_is_caught_at_step_0(
    invariants: Path, tmp_path: Path
) -> None:
    summary = _live(tmp_path, invariants, "--bug", "loss_not_divided")
    violated = {v["relation_type"] for v in summary["violations"]}
    assert violated == {RELATION}
    loss = [v for v in summary["violations"] if "loss" in v["what"] and "backward" in v["what"]]
    assert loss and loss[0]["first_step"] == 0, summary["violations"]
    assert summary["first_violation_step"] == 0


@pytest.mark.timeout(600)
def test_lr_written_to_the_first_group_only_is_caught_at_step_0(
    invariants: Path, tmp_path: Path
) -> None:
    summary = _live(tmp_path, invariants, "--bug", "lr_first_group_only")
    ratio = [v for v in summary["violations"] if "lr[1] / lr" in v["what"]]
    assert ratio and ratio[0]["first_step"] == 0, summary["violations"]
    assert summary["findings"] and "lr" in summary["findings"][0]["headline"]


@pytest.mark.timeout(600)
def test_decay_groups_swapped_are_caught_at_step_0(invariants: Path, tmp_path: Path) -> None:
    summary = _live(tmp_path, invariants, "--bug", "decay_swapped")
    swapped = [v for v in summary["violations"] if "weight_decay[matrices]" in v["what"]]
    assert swapped and swapped[0]["first_step"] == 0, summary["violations"]
    assert {v["relation_type"] for v in swapped} == {INPUT_RELATION}
    assert summary["first_violation_step"] == 0
