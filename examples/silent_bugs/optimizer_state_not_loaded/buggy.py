"""Buggy pipeline: on resume the model state is loaded, the optimizer state is not.

The restarted Adam has no moments and a step count of 0: its first updates after
the resume (step 5) are bias-corrected as if training had just begun, every
weight moves by about lr in the sign of its gradient, and the loss jumps. The
model weights themselves were restored correctly, so nothing looks wrong.

Modelled on EvolvingLMMs-Lab/OneVision-Encoder#65 (the checkpoint did not save
``optimizer.state_dict()``: loss spikes on resume), OpenNMT/OpenNMT-py#617
("optimizer constructor erases state") and NVlabs/stylegan2-ada-pytorch#108.
"""

import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import MLP, batches, make_loader, parse_args, report

RESUME_AFTER = 5


def build(lr: float) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = MLP()
    return model, torch.optim.Adam(model.parameters(), lr=lr)


def train(args) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(args.seed)
    lr = args.lr / 50
    model, optimizer = build(lr)
    for step, inputs, labels in batches(make_loader(args.batch_size, args.seed), args.steps):
        if step == RESUME_AFTER:
            checkpoint = {
                "model": copy.deepcopy(model.state_dict()),
                "optimizer": copy.deepcopy(optimizer.state_dict()),
            }
            model, optimizer = build(lr)
            model.load_state_dict(checkpoint["model"])  # the bug: optimizer state not loaded
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
        report(step, loss)
    return model, optimizer


def main() -> None:
    train(parse_args(__doc__))


if __name__ == "__main__":
    main()
