"""Buggy pipeline: cross-entropy summed over the batch (reduction="sum").

The loss and every gradient are batch-size times larger (32x here), so the
effective learning rate is 32x the configured one and changes whenever the batch
size does. At this small lr the run still trains, just with other dynamics than
configured.

Modelled on ai-safety-foundation/sparse_autoencoder#63 ("Should we use mean
rather than sum for batchwise loss reduction?": with a sum the loss and
gradients scale with the batch size) and PreferredAI/cornac#537
(``nn.BCELoss(reduction="sum")``).
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import MLP, batches, make_loader, parse_args, report


def train(args) -> nn.Module:
    torch.manual_seed(args.seed)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr / 10)
    for step, inputs, labels in batches(make_loader(args.batch_size, args.seed), args.steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels, reduction="sum")  # the bug
        loss.backward()
        optimizer.step()
        report(step, loss)
    return model


def main() -> None:
    train(parse_args(__doc__))


if __name__ == "__main__":
    main()
