"""Buggy pipeline: after validating with the EMA weights, the training weights are not restored.

Every 4 steps the EMA weights are copied into the model for validation and left
there: training silently continues from the (lagging) average instead of its
own weights, so every validation throws away the progress since the average.

Modelled on PKU-YuanGroup/Open-Sora-Plan#186 ("Missed to restore model weights in
training after validation with EMA on") and harubaru/waifu-diffusion#31
("Restore non-EMA weights after saving checkpoint": training continued on the
EMA parameters).
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import MLP, batches, make_loader, parse_args, report


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.9):
        self.decay = decay
        self.shadow = [p.detach().clone() for p in model.parameters()]
        self.stored: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for average, param in zip(self.shadow, model.parameters(), strict=True):
            average.lerp_(param, 1 - self.decay)

    @torch.no_grad()
    def store(self, model: nn.Module) -> None:
        self.stored = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for average, param in zip(self.shadow, model.parameters(), strict=True):
            param.copy_(average)

    @torch.no_grad()
    def restore(self, model: nn.Module) -> None:
        for saved, param in zip(self.stored, model.parameters(), strict=True):
            param.copy_(saved)


def validate(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(inputs).argmax(dim=1) == labels).float().mean().item()


def train(args) -> tuple[nn.Module, EMA]:
    torch.manual_seed(args.seed)
    model = MLP()
    ema = EMA(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    for step, inputs, labels in batches(make_loader(args.batch_size, args.seed), args.steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
        ema.update(model)
        report(step, loss)
        if step % 4 == 3:
            ema.store(model)
            ema.copy_to(model)
            print(f"EMA validation accuracy {validate(model, inputs, labels):.3f}", flush=True)
            # the bug: no ema.restore(model), training goes on from the EMA weights
    return model, ema


def main() -> None:
    train(parse_args(__doc__))


if __name__ == "__main__":
    main()
