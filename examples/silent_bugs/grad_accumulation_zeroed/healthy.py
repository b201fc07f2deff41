"""Healthy pipeline: gradient accumulation over 4 micro-batches per optimizer step.

Gradients of the micro-batches add up in ``.grad``; they are cleared once, after
the optimizer step, so each step applies the gradient of the whole large batch.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import MLP, batches, make_loader, parse_args, report

ACCUMULATION_STEPS = 4


def main() -> None:
    args = parse_args(__doc__)
    torch.manual_seed(args.seed)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    loader = make_loader(args.batch_size, args.seed)
    micro_batches = batches(loader, args.steps * ACCUMULATION_STEPS)
    for micro, inputs, labels in micro_batches:
        loss = F.cross_entropy(model(inputs), labels) / ACCUMULATION_STEPS
        loss.backward()
        if micro % ACCUMULATION_STEPS == ACCUMULATION_STEPS - 1:
            optimizer.step()
            optimizer.zero_grad()
            report(micro // ACCUMULATION_STEPS, loss)


if __name__ == "__main__":
    main()
