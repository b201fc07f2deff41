"""Shared helpers of the stack programs: flags, synthetic data, loss lines, torch-level facts.

Every program is runnable as ``python PROGRAM.py --seed N --steps K [--bug NAME] [--dump F]``
and prints exactly one ``step N loss X`` line per optimizer step (``X`` is the ``repr`` of
the float, so traced and untraced runs compare bit for bit). ``main(argv)`` returns a dict
of torch-level facts (parameters before/after, lr per step, ...) that the tests use to
prove that each injected bug really is a bug; ``--dump F`` also saves it with torch.save.

The data are synthetic and made locally (no download): a random first-order Markov chain
for token streams, a random linear teacher for images.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

# Offline by construction: never let a library try to reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parser(
    description: str,
    bugs: dict[str, str],
    *,
    steps: int = 24,
    batch_size: int = 16,
    lr: float = 1e-3,
    warmup: int = 0,
) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--seed", type=int, default=1, help="model-init and shuffling seed")
    p.add_argument("--steps", type=int, default=steps, help="optimizer steps to run")
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--warmup", type=int, default=warmup, help="warm-up optimizer steps")
    p.add_argument(
        "--bug",
        choices=sorted(bugs),
        default=None,
        help="inject one silent bug: " + "; ".join(f"{k}: {v}" for k, v in bugs.items()),
    )
    p.add_argument("--dump", type=Path, default=None, help="torch.save the run's facts here")
    return p


def report(step: int, loss: float | torch.Tensor, **extra: float | torch.Tensor) -> None:
    """One line per optimizer step, exact values (repr), for bit-for-bit comparison."""
    value = loss.item() if isinstance(loss, torch.Tensor) else float(loss)
    values = {k: v.item() if isinstance(v, torch.Tensor) else float(v) for k, v in extra.items()}
    tail = "".join(f" {k} {v!r}" for k, v in values.items())
    print(f"step {step} loss {value!r}{tail}", flush=True)


def markov_tokens(
    num_tokens: int, vocab: int, *, first: int = 0, data_seed: int = 1234
) -> torch.Tensor:
    """A token stream from a sparse random Markov chain over ids ``first..vocab-1``."""
    g = torch.Generator().manual_seed(data_seed)
    states = vocab - first
    logits = torch.randn(states, states, generator=g) * 3.0
    probs = torch.softmax(logits, dim=1)
    out = torch.empty(num_tokens, dtype=torch.long)
    state = 0
    draws = torch.rand(num_tokens, generator=g)
    cdf = probs.cumsum(dim=1)
    for i in range(num_tokens):
        state = int(torch.searchsorted(cdf[state], draws[i]).clamp(max=states - 1))
        out[i] = state + first
    return out


def teacher_images(
    num_samples: int, shape: Sequence[int], num_classes: int, *, data_seed: int = 1234
) -> torch.utils.data.TensorDataset:
    """Noise images labelled by a fixed random linear teacher: learnable, offline."""
    g = torch.Generator().manual_seed(data_seed)
    inputs = torch.randn(num_samples, *shape, generator=g)
    teacher = torch.randn(inputs[0].numel(), num_classes, generator=g)
    labels = (inputs.flatten(1) @ teacher).argmax(dim=1)
    return torch.utils.data.TensorDataset(inputs, labels)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer, by name."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def group_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [float(g["lr"]) for g in optimizer.param_groups]


def finish(facts: dict, dump: Path | None) -> dict:
    if dump is not None:
        torch.save(facts, dump)
    return facts


def use_torchvision_stub_if_missing() -> None:
    """timm imports torchvision at import time; use the tiny stub when none is importable.

    The stub (``_torchvision_stub/``) is test material only: a CPU-only torch cannot load
    the CUDA torchvision wheel that the package index serves (``operator torchvision::nms
    does not exist``), and the timm paths these programs use need nothing from torchvision
    but the ``FrozenBatchNorm2d`` class. A real, working torchvision always wins.
    """
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        sys.path.append(str(Path(__file__).resolve().parent / "_torchvision_stub"))
