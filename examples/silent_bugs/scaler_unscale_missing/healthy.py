"""Healthy pipeline: CPU mixed precision (bfloat16 autocast) with a GradScaler and clipping.

The loss is scaled before ``backward()``; ``scaler.unscale_(optimizer)`` turns the
gradients back into true gradients before ``clip_grad_norm_`` measures and clips
them, as the PyTorch AMP examples ("Working with unscaled gradients") prescribe.

The buggy twin is modelled on pytorch/examples#1196 ("add
scaler.unscale_(optimizer) before clip_grad_norm_"), milesial/Pytorch-UNet#468
("Gradients are clipped before the unscaling") and rwth-i6/returnn#1590.
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
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        scaler.step(optimizer)
        scaler.update()
        report(step, loss)
    return model


def main() -> None:
    train(parse_args(__doc__))


if __name__ == "__main__":
    main()
