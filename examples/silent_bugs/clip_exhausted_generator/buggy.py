"""Buggy pipeline: the parameters are kept as a generator, which the logging exhausts.

``model.parameters()`` is a generator: the gradient-norm log of the first step
consumes it, and from then on ``clip_grad_norm_`` receives nothing and clips
nothing (and the log shows 0). Every step applies the full, unclipped gradient.

Modelled on pytorch/pytorch#148259 ("clip_grad_norm_ receives an exhausted
generator": no gradient clipping occurs, silently), pytorch/torchtitan#1258 and
ShusenTang/Dive-into-DL-PyTorch#101.
"""

import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import MLP, batches, make_loader, parse_args, report

MAX_GRAD_NORM = 0.5


def train(args) -> nn.Module:
    torch.manual_seed(args.seed)
    model = MLP()
    params = model.parameters()  # the bug: a generator, exhausted by its first use
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    for step, inputs, labels in batches(make_loader(args.batch_size, args.seed), args.steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        grad_norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params))
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        report(step, loss)
        print(f"grad norm {grad_norm:.4f}", flush=True)
    return model


def main() -> None:
    train(parse_args(__doc__))


if __name__ == "__main__":
    main()
