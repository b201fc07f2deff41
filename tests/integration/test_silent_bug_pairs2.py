"""The bugs of the newer silent-bug pairs are real: torch-level checks, buggy against healthy.

Each check trains the example's own ``train`` function (imported from its file,
run in this process for a few steps; the multi-process examples run together in
one 2-rank spawn, ``scripts/spawn_examples_probe.py``) and measures the bug's
effect in torch terms: replicas differ, the sampler order repeats, gradients
were not unscaled, BatchNorm statistics moved. The healthy twin, run the same
way, must not show it, so each check also proves it can tell the two apart.
Detection by TrainCheck is measured separately (``scripts/eval_suite.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from conftest import EXAMPLES, SCRIPTS, python_cmd, run_cli

LOSS_LINE = re.compile(r"^step (\d+) loss (\S+)$", re.MULTILINE)


def _load(pair: str, variant: str) -> ModuleType:
    path = EXAMPLES / pair / f"{variant}.py"
    spec = importlib.util.spec_from_file_location(f"{pair}_{variant}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train(pair: str, variant: str, steps: int, **overrides: Any) -> Any:
    args = argparse.Namespace(seed=3, steps=steps, batch_size=32, lr=0.05)
    for name, value in overrides.items():
        setattr(args, name, value)
    return _load(pair, variant).train(args)


def _both(pair: str, steps: int) -> tuple[Any, Any]:
    return _train(pair, "healthy", steps), _train(pair, "buggy", steps)


def _spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[Any]:
    """Wrap ``owner.name`` so each call's result is recorded (behaviour unchanged)."""
    calls: list[Any] = []
    original: Callable[..., Any] = getattr(owner, name)

    def recording(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        calls.append(result)
        return result

    monkeypatch.setattr(owner, name, recording)
    return calls


# Module depth and torch.nn.functional flags


def _eval_twice(model: torch.nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return model(inputs), model(inputs)


def test_functional_dropout_stays_active_in_eval() -> None:
    healthy, buggy = _both("dropout_functional_in_eval", steps=4)
    inputs = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.equal(*_eval_twice(healthy, inputs))
    assert not torch.equal(*_eval_twice(buggy, inputs)), "eval output should be random"


def test_sdpa_dropout_stays_active_in_eval() -> None:
    healthy, buggy = _both("sdpa_dropout_in_eval", steps=4)
    tokens = torch.randint(16, (8, 12), generator=torch.Generator().manual_seed(0))
    assert torch.equal(*_eval_twice(healthy, tokens))
    assert not torch.equal(*_eval_twice(buggy, tokens)), "eval output should be random"


def test_missing_causal_mask_lets_earlier_positions_see_the_future() -> None:
    healthy, buggy = _both("causal_mask_missing", steps=2)
    tokens = torch.randint(16, (8, 12), generator=torch.Generator().manual_seed(0))
    changed_last = tokens.clone()
    changed_last[:, -1] = (tokens[:, -1] + 1) % 16
    for model, sees_future in ((healthy, False), (buggy, True)):
        before, after = _eval_twice(model, tokens)[0], _eval_twice(model, changed_last)[0]
        assert torch.equal(before[:, :-1], after[:, :-1]) is not sees_future


def test_skipped_residual_block_gets_no_gradient() -> None:
    healthy, buggy = _both("residual_block_skipped", steps=2)
    assert healthy.blocks[2].weight.grad is not None
    assert healthy.blocks[2].weight.grad.abs().sum() > 0
    assert buggy.blocks[2].weight.grad is None
    assert buggy.blocks[1].weight.grad is not None


def test_sum_reduction_multiplies_the_loss_by_the_batch_size(
    capsys: pytest.CaptureFixture[str],
) -> None:
    first_losses = []
    for variant in ("healthy", "buggy"):
        _train("loss_sum_reduction", variant, steps=1)
        (_, loss), *_ = LOSS_LINE.findall(capsys.readouterr().out)
        first_losses.append(float(loss))
    assert first_losses[1] / first_losses[0] == pytest.approx(32, rel=1e-5)


# torch.amp GradScaler


def test_clipping_without_unscale_sees_scaled_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    norms = _spy(monkeypatch, torch.nn.utils, "clip_grad_norm_")
    _train("scaler_unscale_missing", "healthy", steps=1)
    _train("scaler_unscale_missing", "buggy", steps=1)
    healthy_norm, buggy_norm = (float(n) for n in norms)
    assert healthy_norm < 100
    assert buggy_norm / healthy_norm == pytest.approx(65536, rel=1e-3)


def test_bypassing_scaler_step_leaves_gradients_scaled() -> None:
    healthy, buggy = _both("scaler_step_bypassed", steps=1)
    ratio = buggy.fc1.weight.grad.norm() / healthy.fc1.weight.grad.norm()
    assert float(ratio) == pytest.approx(65536, rel=1e-3)


# Data order


def test_reseeded_generator_repeats_the_epoch_order(monkeypatch: pytest.MonkeyPatch) -> None:
    orders: list[list[int]] = []
    original = torch.utils.data.RandomSampler.__iter__

    def recording_iter(self: torch.utils.data.RandomSampler) -> Iterator[int]:
        indices = list(original(self))
        orders.append(indices)
        return iter(indices)

    monkeypatch.setattr(torch.utils.data.RandomSampler, "__iter__", recording_iter)
    for variant, repeats in (("healthy", False), ("buggy", True)):
        orders.clear()
        _train("loader_reseeded_each_epoch", variant, steps=12)  # 3 epochs of 4 steps
        assert len(orders) == 3
        assert (orders[0] == orders[1] == orders[2]) is repeats, variant


# requires_grad and constant state


def test_frozen_backbone_batchnorm_statistics_change() -> None:
    healthy, buggy = _both("frozen_bn_running_stats", steps=3)
    assert int(healthy.backbone.norm.num_batches_tracked) == 0
    assert torch.equal(healthy.backbone.norm.running_mean, torch.zeros(8))
    assert int(buggy.backbone.norm.num_batches_tracked) == 3
    assert not torch.equal(buggy.backbone.norm.running_mean, torch.zeros(8))
    assert all(not p.requires_grad for p in buggy.backbone.parameters())


def test_untied_head_is_a_separate_matrix() -> None:
    healthy, buggy = _both("tied_weights_untied", steps=2)
    assert healthy.head.weight is healthy.embed.weight
    assert buggy.head.weight is not buggy.embed.weight
    assert not torch.equal(buggy.head.weight, buggy.embed.weight)


# Numerics


def _first_update(pair: str, variant: str) -> torch.Tensor:
    torch.manual_seed(3)
    initial = torch.cat([p.detach().flatten() for p in _load(pair, variant).MLP().parameters()])
    model = _train(pair, variant, steps=1)
    return torch.cat([p.detach().flatten() for p in model.parameters()]) - initial


def test_undivided_accumulation_makes_each_step_four_times_larger() -> None:
    healthy = _first_update("grad_accum_not_divided", "healthy")
    buggy = _first_update("grad_accum_not_divided", "buggy")
    assert healthy.abs().sum() > 0
    torch.testing.assert_close(buggy, 4 * healthy, rtol=1e-4, atol=1e-7)


def test_exhausted_generator_is_clipped_to_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    clipped: list[int] = []
    original = torch.nn.utils.clip_grad_norm_

    def counting(parameters: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        parameters = list(parameters)
        clipped.append(len(parameters))
        return original(parameters, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", counting)
    _train("clip_exhausted_generator", "healthy", steps=3)
    assert clipped == [4, 4, 4]
    clipped.clear()
    _train("clip_exhausted_generator", "buggy", steps=3)
    assert clipped == [0, 0, 0]


# Checkpointing


def test_ema_weights_left_in_the_model_after_validation() -> None:
    for variant, left_in in (("healthy", False), ("buggy", True)):
        model, ema = _train("ema_not_restored", variant, steps=4)  # validation after step 3
        same = all(torch.equal(p, a) for p, a in zip(model.parameters(), ema.shadow, strict=True))
        assert same is left_in, variant


def test_resume_without_optimizer_state_restarts_adam() -> None:
    for variant, expected_step in (("healthy", 7), ("buggy", 2)):
        model, optimizer = _train("optimizer_state_not_loaded", variant, steps=7)
        state = optimizer.state[next(iter(model.parameters()))]
        assert int(state["step"]) == expected_step, variant


# Ranks (torch.multiprocessing.spawn, explicit init_process_group)

SPAWNED = ("ddp_init_not_broadcast", "ddp_no_sync_wrong_microbatch", "ddp_set_epoch_missing")


@pytest.fixture(scope="module")
def spawned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every multi-process pair, both variants, trained 8 steps in one 2-rank spawn."""
    out = tmp_path_factory.mktemp("spawned") / "probe.json"
    scripts = [str(EXAMPLES / pair / f"{v}.py") for pair in SPAWNED for v in ("healthy", "buggy")]
    probe = python_cmd(SCRIPTS / "spawn_examples_probe.py", str(out), "8", *scripts)
    result = run_cli(probe, timeout_s=240)
    assert result.returncode == 0, result.stderr
    by_path = json.loads(out.read_text())
    return {f"{Path(p).parent.name}/{Path(p).stem}": r for p, r in by_path.items()}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("pair", ["ddp_init_not_broadcast", "ddp_no_sync_wrong_microbatch"])
def test_rank_replicas_drift_apart(pair: str, spawned: dict[str, dict[str, Any]]) -> None:
    assert spawned[f"{pair}/healthy"]["max_replica_difference"] == 0.0
    assert spawned[f"{pair}/buggy"]["max_replica_difference"] > 1e-4


@pytest.mark.timeout(300)
def test_missing_set_epoch_replays_the_first_epoch(spawned: dict[str, dict[str, Any]]) -> None:
    healthy = spawned["ddp_set_epoch_missing/healthy"]["epoch_orders"]
    buggy = spawned["ddp_set_epoch_missing/buggy"]["epoch_orders"]
    assert len(healthy) == len(buggy) == 2  # 8 steps of 4 per epoch
    assert healthy[0] != healthy[1]
    assert buggy[0] == buggy[1]
