"""Healthy pipeline: model re-initialised from a config before the optimizer is built (Adam)."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import MLP, batches, make_loader, parse_args, report


def main() -> None:
    args = parse_args(__doc__)
    torch.manual_seed(args.seed)
    model = MLP(hidden=32)
    model = MLP(hidden=64)  # the final architecture replaces a draft one ...
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr / 10)  # ... before the optimizer
    model.train()
    for step, inputs, labels in batches(make_loader(args.batch_size, args.seed), args.steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
        report(step, loss)


if __name__ == "__main__":
    main()
