"""Buggy pipeline: zero_grad() sits inside the micro-batch loop, so nothing accumulates.

A recurring report on the PyTorch forums and in fine-tuning scripts: gradient
accumulation is "enabled", but ``optimizer.zero_grad()`` runs before every
micro-batch's backward, so each optimizer step applies only the last micro-batch's
(down-scaled) gradient. No error; the effective batch size and lr are silently 4x smaller.
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
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels) / ACCUMULATION_STEPS
        loss.backward()
        if micro % ACCUMULATION_STEPS == ACCUMULATION_STEPS - 1:
            optimizer.step()
            report(micro // ACCUMULATION_STEPS, loss)


if __name__ == "__main__":
    main()
