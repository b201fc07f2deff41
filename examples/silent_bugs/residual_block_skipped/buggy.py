"""Buggy pipeline: forward() iterates over all blocks but the last one.

An off-by-one slice skips the last residual block: its weights are created,
counted and handed to the optimizer, but never take part in the forward pass, so
they never get a gradient and never change. The residual connection hides it:
the network is simply one block shallower and the loss still falls.

Modelled on inria-thoth/HySUPP#3 ("layer2 is defined but not used in MiSiCNet
forward pass").
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
        for block in self.blocks[:-1]:  # the bug: the last block is never applied
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
