"""Healthy pipeline: Adam training that checkpoints and resumes half-way (after step 5).

At the resume point the job rebuilds model and optimizer, as a restarted job
would, and loads both state dicts from the checkpoint: Adam's moments and step
counts carry on where they were.

The buggy twin is modelled on EvolvingLMMs-Lab/OneVision-Encoder#65 (the
checkpoint did not save ``optimizer.state_dict()``: loss spikes on resume),
OpenNMT/OpenNMT-py#617 ("optimizer constructor erases state") and
NVlabs/stylegan2-ada-pytorch#108.
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
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
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
