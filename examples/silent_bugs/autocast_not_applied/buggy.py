"""Buggy pipeline: the autocast context wraps only the loss, not the forward pass.

Mixed precision is silently not applied to the model: it runs in float32, slower
and with more memory, while the code looks like an AMP training loop.
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
        optimizer.zero_grad()
        logits = model(inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        optimizer.step()
        report(step, loss)


if __name__ == "__main__":
    main()
