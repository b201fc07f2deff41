"""Buggy pipeline: clip_grad_norm_ runs on the scaled gradients (no scaler.unscale_).

The gradients are still multiplied by the loss scale (65536) when they are
clipped, so every step they are clipped to norm 1.0 *scaled*; ``scaler.step``
then divides them by the scale, and the update is 65536x too small: the loss
barely moves, without any error or warning.

Modelled on pytorch/examples#1196 ("add scaler.unscale_(optimizer) before
clip_grad_norm_"), milesial/Pytorch-UNet#468 ("Gradients are clipped before the
unscaling") and rwth-i6/returnn#1590 ("gradient_clip wrong when grad_scaler is
used").
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import MLP, batches, make_loader, parse_args, report

MAX_GRAD_NORM = 1.0


def train(args) -> nn.Module:
    torch.manual_seed(args.seed)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    scaler = torch.amp.GradScaler("cpu")
    for step, inputs, labels in batches(make_loader(args.batch_size, args.seed), args.steps):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(inputs)
        loss = F.cross_entropy(logits.float(), labels)
        scaler.scale(loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        scaler.step(optimizer)
        scaler.update()
        report(step, loss)
    return model


def main() -> None:
    train(parse_args(__doc__))


if __name__ == "__main__":
    main()
