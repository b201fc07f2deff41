"""Healthy pipeline: fine-tune every layer of an MLP with Adam."""

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
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr / 10)
    for step, inputs, labels in batches(make_loader(args.batch_size, args.seed), args.steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
        report(step, loss)


if __name__ == "__main__":
    main()
