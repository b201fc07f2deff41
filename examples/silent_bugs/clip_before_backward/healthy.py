"""Healthy pipeline: gradient norm clipped between backward() and step()."""

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
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=0.5)
        optimizer.step()
        report(step, loss)


if __name__ == "__main__":
    main()
