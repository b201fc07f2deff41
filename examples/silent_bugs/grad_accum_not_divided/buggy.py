"""Buggy pipeline: the micro-batch losses are not divided by the accumulation steps.

The accumulated gradient is the sum over the 4 micro-batches instead of their
mean, so every step is 4x larger than configured (and changes whenever the
number of accumulation steps does). Nothing fails; the loss curve is just
noisier.

Modelled on karpathy/nanoGPT#206 ("loss.backward() without first normalizing the
loss value to account for number of gradient accumulation steps") and
ApolloResearch/e2e_sae#70 (the division had been removed by mistake).
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import MLP, batches, make_loader, parse_args, report

ACCUMULATION_STEPS = 4


def train(args) -> nn.Module:
    torch.manual_seed(args.seed)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    loader = make_loader(args.batch_size, args.seed)
    for micro, inputs, labels in batches(loader, args.steps * ACCUMULATION_STEPS):
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()  # the bug: not divided by ACCUMULATION_STEPS
        if micro % ACCUMULATION_STEPS == ACCUMULATION_STEPS - 1:
            optimizer.step()
            optimizer.zero_grad()
            report(micro // ACCUMULATION_STEPS, loss)
    return model


def main() -> None:
    train(parse_args(__doc__))


if __name__ == "__main__":
    main()
