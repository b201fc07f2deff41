"""Healthy pipeline: a residual MLP of 3 blocks, every block applied in forward().

The buggy twin is modelled on inria-thoth/HySUPP#3 ("layer2 is defined but not
used in MiSiCNet forward pass"): a block that is built, counted in the parameter
total and handed to the optimizer, but never called, never trains.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import IMAGE_SHAPE, NUM_CLASSES, batches, make_loader, parse_args, report


class ResidualMLP(nn.Module):
    def __init__(self, hidden: int = 64, depth: int = 3):
        super().__init__()
        self.stem = nn.Linear(IMAGE_SHAPE[1] * IMAGE_SHAPE[2], hidden)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.head = nn.Linear(hidden, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x.flatten(1)))
        for block in self.blocks:
            h = h + torch.relu(block(h))
        return self.head(h)


def train(args) -> nn.Module:
    torch.manual_seed(args.seed)
    model = ResidualMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
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
