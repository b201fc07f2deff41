"""Healthy pipeline: CPU mixed precision (bfloat16 autocast) with a GradScaler and Adam.

``scaler.scale(loss).backward()`` multiplies the loss by the scale (65536)
before the backward pass; ``scaler.step(optimizer)`` divides the gradients by
the same scale before stepping (and skips steps whose gradients overflowed);
``scaler.update()`` adapts the scale.

The buggy twin is modelled on nerfstudio-project/nerfacc#307 ("the sample code
uses the GradScaler, but only for scaling the loss and not for the update step:
the gradients are 1024x larger than they should be").
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
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr / 50)
    scaler = torch.amp.GradScaler("cpu")
    for step, inputs, labels in batches(make_loader(args.batch_size, args.seed), args.steps):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(inputs)
        loss = F.cross_entropy(logits.float(), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        report(step, loss)
    return model


def main() -> None:
    train(parse_args(__doc__))


if __name__ == "__main__":
    main()
