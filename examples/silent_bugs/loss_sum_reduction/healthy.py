"""Healthy pipeline: cross-entropy averaged over the batch (reduction="mean").

The step size does not depend on the batch size: the gradient is a mean over
the samples of the batch.

The buggy twin is modelled on ai-safety-foundation/sparse_autoencoder#63
("Should we use mean rather than sum for batchwise loss reduction?": with a sum
the loss and gradients scale with the batch size, and so does the effective
learning rate) and PreferredAI/cornac#537 (``nn.BCELoss(reduction="sum")``).
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
        loss = F.cross_entropy(model(inputs), labels, reduction="mean")
        loss.backward()
        optimizer.step()
        report(step, loss)
    return model


def main() -> None:
    train(parse_args(__doc__))


if __name__ == "__main__":
    main()
