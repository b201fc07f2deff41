"""Buggy pipeline: optimizer.step() is called directly instead of scaler.step(optimizer).

The loss is scaled before ``backward()`` but nothing unscales the gradients:
Adam steps on gradients 65536x too large. Adam's normalisation hides most of
it, so the loss still falls; but every gradient the optimizer sees (and its
second moments, epsilon and any weight decay or clipping) is off by the scale,
overflowing steps are no longer skipped and the scale is never adapted.

Modelled on nerfstudio-project/nerfacc#307 ("the sample code uses the GradScaler,
but only for scaling the loss and not for the update step: the gradients are
1024x larger than they should be").
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
        optimizer.step()  # the bug: the gradients are never unscaled
        report(step, loss)
    return model


def main() -> None:
    train(parse_args(__doc__))


if __name__ == "__main__":
    main()
