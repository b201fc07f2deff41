"""The stack programs (examples/stacks): tracing changes nothing, and every bug is real.

For each program of ``examples/stacks/stacks.json``:

(a) it runs untraced and under ``traincheck-run`` with the same seed: identical loss
    lines, identical exit code, and the tracer adds no line to the job's stderr (the
    launcher's own ``traincheck-run:`` summary lines aside); any other line naming
    traincheck would be our hooks talking inside the user's job;
(b) each injected bug is shown to be a bug at the torch level, in process: the run's
    facts (``main(argv)`` of the program: parameters, lr per step, gradient norms, module
    modes, ...) differ from the healthy run of the same seed exactly as the bug says.

A program's tests are skipped when its library is not installed (the ``stacks`` extra).
Measured on 2 heavily shared cores: about 3.7 minutes in all (the 18 bug checks 75 s in
one process; the 7 traced/untraced pairs 150 s, dominated by interpreter start and the
import of transformers/lightning, 10-30 s each under load).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from tests.integration.conftest import REPO, cli, python_cmd, run_cli

STACKS = REPO / "examples" / "stacks"
SUITE = json.loads((STACKS / "stacks.json").read_text())
PROGRAMS = {p["name"]: p for p in SUITE["programs"]}
LINE = re.compile(r"^step \d+ loss .*$", re.MULTILINE)
IDENTITY_STEPS = "4"


def _require(program: dict) -> None:
    module = program["requires"]
    if module == "timm":
        sys.path.insert(0, str(STACKS))
        from _common import use_torchvision_stub_if_missing

        use_torchvision_stub_if_missing()
    pytest.importorskip(
        module, reason=f"{program['name']} needs {module}: pip install -e '.[stacks]'"
    )


def _load(name: str):
    """Import a program as a module (its main(argv) returns the run's facts)."""
    if str(STACKS) not in sys.path:
        sys.path.insert(0, str(STACKS))
    return importlib.import_module(name)


# ---------------------------------------------------------------- (a) traced == untraced


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_traced_run_is_identical(name: str, tmp_path: Path) -> None:
    program = PROGRAMS[name]
    _require(program)
    command = python_cmd(STACKS / program["script"], "--seed", "3", "--steps", IDENTITY_STEPS)
    traced_cmd = [cli("traincheck-run"), "-o", str(tmp_path / "trace"), "--", *command]
    with ThreadPoolExecutor(max_workers=2) as pool:
        plain, traced = pool.map(lambda c: run_cli(c, timeout_s=240), [command, traced_cmd])
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert traced.returncode == plain.returncode, traced.stderr[-2000:]
    plain_lines = LINE.findall(plain.stdout)
    assert len(plain_lines) == int(IDENTITY_STEPS), plain.stdout
    assert LINE.findall(traced.stdout) == plain_lines
    untraced_err = set(plain.stderr.splitlines())
    added = [
        line
        for line in traced.stderr.splitlines()
        if line not in untraced_err and not line.startswith("traincheck-run:")
    ]
    ours = [line for line in added if "traincheck" in line.lower()]
    assert not ours, "our hooks wrote to the job's stderr:\n" + "\n".join(ours)
    assert not added, "tracing added stderr lines:\n" + "\n".join(added)


# ---------------------------------------------------------------- (b) each bug is a bug

_FACTS: dict[tuple[str, tuple[str, ...]], dict] = {}


def _facts(name: str, *argv: str) -> dict:
    key = (name, argv)
    if key not in _FACTS:
        _FACTS[key] = _load(name).main(list(argv))
    return _FACTS[key]


def _lr(facts: dict, group: int = 0, key: str = "lr") -> list[float]:
    return [round(step[group], 10) for step in facts[key]]


def _changed(facts: dict, name: str) -> bool:
    return not torch.equal(facts["initial"][name], facts["final"][name])


def check_hf_trainer(bug: str) -> None:
    base = ("--seed", "3", "--steps", "6")
    if bug == "custom_loss_ignores_num_items":
        base = (*base, "--grad-accum", "4")
    healthy, buggy = _facts("hf_trainer", *base), _facts("hf_trainer", *base, "--bug", bug)
    if bug == "pad_labels_not_masked":
        assert healthy["unmasked_pad_labels"] == 0
        assert buggy["unmasked_pad_labels"] > 0  # the loss is taken on padding
    elif bug == "custom_loss_ignores_num_items":
        # Same seed, same data: the first step's pre-clip gradient is ~GA times larger.
        ratio = buggy["grad_norm"][0] / healthy["grad_norm"][0]
        assert 3.0 < ratio < 5.5, ratio
    elif bug == "frozen_tied_embeddings":
        assert healthy["lm_head_is_wte"] and buggy["lm_head_is_wte"]
        assert _changed(healthy, "lm_head.weight")
        assert not _changed(buggy, "lm_head.weight")  # the head never trained
        assert _changed(buggy, "transformer.h.0.attn.c_attn.weight")


def check_accelerate_loop(bug: str) -> None:
    base = ("--seed", "3", "--steps", "6")
    healthy, buggy = (
        _facts("accelerate_loop", *base),
        _facts("accelerate_loop", *base, "--bug", bug),
    )
    accum = 2
    if bug == "optimizer_not_prepared":
        assert healthy["updates"] == 6
        assert buggy["updates"] == 6 * accum  # an update per micro-batch
    elif bug == "scheduler_not_prepared":
        h, b = _lr(healthy), _lr(buggy)
        # the schedule ticks once per micro-batch: step k gets the lr of step GA*k+GA-1
        assert [b[k] for k in range(3)] == [h[accum * k + accum - 1] for k in range(3)]
    elif bug == "backward_not_scaled":
        ratio = buggy["grad_norm"][0] / healthy["grad_norm"][0]
        assert ratio == pytest.approx(accum, rel=1e-4)


def check_lightning_auto(bug: str) -> None:
    base = ("--seed", "3", "--steps", "10")
    healthy, buggy = _facts("lightning_auto", *base), _facts("lightning_auto", *base, "--bug", bug)
    if bug == "callback_leaves_eval":
        assert all(healthy["training_mode"])
        assert all(buggy["training_mode"][:4]) and not any(buggy["training_mode"][4:])
    elif bug == "scheduler_interval_epoch":
        assert len(set(_lr(healthy))) > 3  # warm-up then cosine, per step
        assert len(set(_lr(buggy))) == 1  # never stepped within the epoch


def check_lightning_gan(bug: str) -> None:
    base = ("--seed", "3", "--steps", "10")
    healthy, buggy = _facts("lightning_gan", *base), _facts("lightning_gan", *base, "--bug", bug)
    if bug == "schedulers_not_stepped":
        assert _lr(healthy, key="lr_g")[4] == pytest.approx(_lr(healthy, key="lr_g")[0] / 2)
        assert len(set(_lr(buggy, key="lr_g"))) == 1
        assert len(set(_lr(buggy, key="lr_d"))) == 1
    elif bug == "d_zero_grad_missing":
        assert healthy["d_grad_before_backward"] == [0.0] * 10
        grown = buggy["d_grad_before_backward"][1:]
        assert all(g > 0 for g in grown) and grown[-1] > grown[0]


def check_timm_ema(bug: str) -> None:
    base = ("--seed", "3", "--steps", "14")
    healthy, buggy = _facts("timm_ema", *base), _facts("timm_ema", *base, "--bug", bug)
    if bug == "ema_weights_not_restored":

        def model_is_ema(facts: dict) -> bool:
            first = facts["after_validation"][0]
            return all(torch.equal(first["model"][k], first["ema"][k]) for k in first["model"])

        assert not model_is_ema(healthy)
        assert model_is_ema(buggy)  # training resumes from the EMA weights
    elif bug == "scheduler_step_per_batch":
        h, b = _lr(healthy), _lr(buggy)
        # one epoch of schedule per batch: update k gets epoch k's lr (6 updates/epoch)
        assert b[1] == h[6] and b[2] == h[12]
        assert h[1] == h[0]


def check_nanogpt(bug: str) -> None:
    base = ("--seed", "3", "--steps", "6")
    healthy, buggy = _facts("nanogpt", *base), _facts("nanogpt", *base, "--bug", bug)
    if bug == "no_decay_swapped":
        assert healthy["groups"] == [
            {"weight_decay": 0.1, "ndims": [2]},
            {"weight_decay": 0.0, "ndims": [1]},
        ]
        assert buggy["groups"][0] == {"weight_decay": 0.1, "ndims": [1]}  # LayerNorm, biases
    elif bug == "accum_loss_not_scaled":
        ratio = buggy["grad_norm"][0] / healthy["grad_norm"][0]
        assert ratio == pytest.approx(2.0, rel=1e-4)  # GA = 2
    elif bug == "lr_first_group_only":
        assert _lr(healthy, 1) == _lr(healthy, 0)
        assert set(_lr(buggy, 1)) == {1e-3 * 3}  # the base lr: no warm-up, no decay
        assert _lr(buggy, 0) == _lr(healthy, 0)


def check_word_language_model(bug: str) -> None:
    base = ("--seed", "3", "--steps", "10")
    name = "word_language_model"
    healthy, buggy = _facts(name, *base), _facts(name, *base, "--bug", bug)
    if bug == "eval_mode_left_on":
        assert all(healthy["training_mode"])
        assert all(buggy["training_mode"][:5]) and not any(buggy["training_mode"][5:])
    elif bug == "clip_after_update":
        assert max(healthy["applied_grad_norm"]) <= 0.25 + 1e-5
        assert max(buggy["applied_grad_norm"]) > 0.3  # unclipped gradients applied


BUG_CASES = [(p["name"], b["name"]) for p in SUITE["programs"] for b in p["bugs"]]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("name", "bug"), BUG_CASES, ids=[f"{n}-{b}" for n, b in BUG_CASES])
def test_bug_is_real(name: str, bug: str) -> None:
    _require(PROGRAMS[name])
    globals()[f"check_{name}"](bug)


def test_every_bug_has_a_check_and_a_source() -> None:
    for name, bug in BUG_CASES:
        assert f"check_{name}" in globals(), name
        source = (STACKS / PROGRAMS[name]["script"]).read_text()
        section = source.split(f"``{bug}``", 1)
        assert len(section) == 2, f"{name}: bug {bug} is not described in the docstring"
        assert "https://" in section[1].split("\n- ``", 1)[0], f"{name}: {bug} cites no source"
