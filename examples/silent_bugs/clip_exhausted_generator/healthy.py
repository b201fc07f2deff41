"""Healthy pipeline: gradient-norm logging and clipping over a list of the parameters.

The parameters are materialised once with ``list(model.parameters())``; the
gradient norm is logged every step and then clipped to MAX_GRAD_NORM.

The buggy twin is modelled on pytorch/pytorch#148259 ("clip_grad_norm_ receives
an exhausted generator": no gradient clipping occurs, silently),
pytorch/torchtitan#1258 and ShusenTang/Dive-into-DL-PyTorch#101 (a generator
consumed by a first loop, so the clipping loop never runs).
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
    params = list(model.parameters())
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
