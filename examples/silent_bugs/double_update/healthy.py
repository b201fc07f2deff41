"""Healthy pipeline: separate optimizers for the body (SGD) and the head (Adam)."""

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
    body_optimizer = torch.optim.SGD(model.fc1.parameters(), lr=args.lr)
    head_optimizer = torch.optim.Adam(model.fc2.parameters(), lr=args.lr / 10)
    for step, inputs, labels in batches(make_loader(args.batch_size, args.seed), args.steps):
        body_optimizer.zero_grad()
        head_optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        body_optimizer.step()
        head_optimizer.step()
        report(step, loss)


if __name__ == "__main__":
    main()
