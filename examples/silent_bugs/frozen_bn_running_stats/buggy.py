"""Buggy pipeline: the frozen backbone is left in train mode by model.train().

Its parameters are frozen (``requires_grad=False``), but ``model.train()`` puts
its BatchNorm in training mode: every forward pass overwrites the pretrained
running mean and variance with statistics of the fine-tuning batches, and
normalises with per-batch statistics. The "frozen" backbone changes from the
first step and nothing reports it.

Modelled on pytorch/pytorch#86590 ("Easy way to 'freeze' BatchNorm
running_mean/running_var": after training, all batchnorm statistics had
changed), lightly-ai/lightly#1438 and pgniewko/gt-pyg#112 (frozen BatchNorm
reset to train mode by the next ``model.train()``).
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import IMAGE_SHAPE, NUM_CLASSES, batches, make_loader, parse_args, report


class Backbone(nn.Module):
    def __init__(self, channels: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(IMAGE_SHAPE[0], channels, kernel_size=3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x)))


class FineTuned(nn.Module):
    def __init__(self, channels: int = 8):
        super().__init__()
        self.backbone = Backbone(channels)
        self.head = nn.Linear(channels * 14 * 14, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).flatten(1))


def train(args) -> nn.Module:
    torch.manual_seed(args.seed)
    model = FineTuned()
    model.backbone.requires_grad_(False)
    optimizer = torch.optim.SGD(model.head.parameters(), lr=args.lr)
    model.train()  # the bug: the frozen backbone's BatchNorm is in train mode too
    for step, inputs, labels in batches(make_loader(args.batch_size, args.seed), args.steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
        report(step, loss)
    return model


def main() -> None:
    train(parse_args(__doc__))


if __name__ == "__main__":
    main()
