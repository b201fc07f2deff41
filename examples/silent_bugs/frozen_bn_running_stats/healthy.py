"""Healthy pipeline: fine-tune a head on a frozen convolutional backbone with BatchNorm.

The backbone's parameters have ``requires_grad=False`` and are not given to the
optimizer; after ``model.train()`` the backbone is put back in eval mode, so its
BatchNorm keeps the (pretrained) running statistics instead of re-estimating
them from the fine-tuning batches.

The buggy twin is modelled on pytorch/pytorch#86590 ("Easy way to 'freeze'
BatchNorm running_mean/running_var": requires_grad=False does not stop the
running statistics), lightly-ai/lightly#1438 and pgniewko/gt-pyg#112.
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
    model.train()
    model.backbone.eval()  # frozen: keep its BatchNorm statistics too
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
