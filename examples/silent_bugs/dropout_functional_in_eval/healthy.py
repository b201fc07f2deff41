"""Healthy pipeline: an MLP whose hidden block applies functional dropout, validated every 4 steps.

The block calls ``F.dropout(..., training=self.training)``, so ``model.eval()``
switches it off: validation is deterministic.

The buggy twin is modelled on pytorch/pytorch#26338 ("Behavior of F.dropout in
eval mode": the functional form ignores ``model.eval()``) and Coderx7/SimpleNet#2
(``F.dropout2d(out, 0.1, training=True)`` hard-coded in ``forward``).
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import IMAGE_SHAPE, NUM_CLASSES, batches, make_loader, parse_args, report


class DropoutBlock(nn.Module):
    def __init__(self, width: int, p: float = 0.3):
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(torch.relu(self.linear(x)), self.p, training=self.training)


class Net(nn.Module):
    def __init__(self, hidden: int = 64):
        super().__init__()
        self.stem = nn.Linear(IMAGE_SHAPE[1] * IMAGE_SHAPE[2], hidden)
        self.block = DropoutBlock(hidden)
        self.head = nn.Linear(hidden, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(torch.relu(self.stem(x.flatten(1)))))


def evaluate(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        accuracy = (model(inputs).argmax(dim=1) == labels).float().mean().item()
    model.train()
    return accuracy


def train(args) -> nn.Module:
    torch.manual_seed(args.seed)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    for step, inputs, labels in batches(make_loader(args.batch_size, args.seed), args.steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
        report(step, loss)
        if step % 4 == 3:
            print(f"validation accuracy {evaluate(model, inputs, labels):.3f}", flush=True)
    return model


def main() -> None:
    train(parse_args(__doc__))


if __name__ == "__main__":
    main()
