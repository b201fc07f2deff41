"""Buggy pipeline: a layer is frozen by mistake (meant to freeze nothing), so it never trains.

The optimizer still holds the frozen parameters; they get no gradient, Adam skips
them, and the loss still decreases thanks to the other layer.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import MLP, batches, make_loader, parse_args, report


def main() -> None:
    args = parse_args(__doc__)
    torch.manual_seed(args.seed)
    model = MLP()
    for param in model.fc1.parameters():  # a "freeze the backbone" line copied from elsewhere
        param.requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr / 10)
    for step, inputs, labels in batches(make_loader(args.batch_size, args.seed), args.steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
        report(step, loss)


if __name__ == "__main__":
    main()
