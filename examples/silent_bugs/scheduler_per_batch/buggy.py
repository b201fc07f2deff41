"""Buggy pipeline: the per-epoch LR scheduler is stepped inside the batch loop.

The learning rate decays 8x faster than intended and training stalls early; the
only symptom is a loss curve that flattens too soon.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import MLP, make_loader, parse_args, report


def main() -> None:
    args = parse_args(__doc__)
    torch.manual_seed(args.seed)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    loader = make_loader(args.batch_size, args.seed, num_samples=8 * args.batch_size)
    step = 0
    while step < args.steps:
        for inputs, labels in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(inputs), labels)
            loss.backward()
            optimizer.step()
            scheduler.step()
            report(step, loss)
            step += 1


if __name__ == "__main__":
    main()
