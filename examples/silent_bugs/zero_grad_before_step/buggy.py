"""Buggy pipeline: zero_grad() was moved between backward() and step().

Every step applies empty gradients: the weights never change, the loss only
fluctuates with the batches.
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
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    for step, inputs, labels in batches(make_loader(args.batch_size, args.seed), args.steps):
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.zero_grad()
        optimizer.step()
        report(step, loss)


if __name__ == "__main__":
    main()
