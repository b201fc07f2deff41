"""Gradient accumulation with two param groups and a hand-written lr schedule (NumericRange).

The shape of nanoGPT's loop on a tiny MLP: each optimizer step accumulates
``--accum`` micro-batches whose loss is divided by ``--accum``, clips the total
gradient norm, and writes a warm-up/decay lr into every param group by hand
(group 0: decayed weights, group 1: biases without weight decay).

``--bug loss_not_divided``: the micro-batch loss is not divided by ``--accum``.
``--bug lr_first_group_only``: the scheduled lr is written into group 0 only.
``--bug decay_swapped``: the groups are built with the condition inverted, so the
biases are decayed and the weights are not (nanoGPT's ``no_decay_swapped``).

Options: --seed N --steps K --batch-size B --lr LR --accum A --bug NAME.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--accum", type=int, default=4)
    parser.add_argument(
        "--bug", choices=("loss_not_divided", "lr_first_group_only", "decay_swapped")
    )
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    data = torch.Generator().manual_seed(1234)
    inputs = torch.randn(1024, 32, generator=data)
    labels = (inputs @ torch.randn(32, 8, generator=data)).argmax(dim=1)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    swapped = args.bug == "decay_swapped"
    weights = [p for p in model.parameters() if (p.dim() > 1) != swapped]
    biases = [p for p in model.parameters() if (p.dim() > 1) == swapped]
    optimizer = torch.optim.SGD(
        [{"params": weights, "weight_decay": 1e-4}, {"params": biases, "weight_decay": 0.0}],
        lr=args.lr,
        momentum=0.9,
    )
    warmup = 4
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(args.seed))
    cursor = 0
    for step in range(args.steps):
        lr = args.lr * min((step + 1) / warmup, 1.0 - 0.5 * step / args.steps)
        groups = optimizer.param_groups[:1] if args.bug == "lr_first_group_only" else None
        for group in groups or optimizer.param_groups:
            group["lr"] = lr
        for _ in range(args.accum):
            batch = order[cursor : cursor + args.batch_size]
            cursor = (cursor + args.batch_size) % (len(inputs) - args.batch_size)
            loss = F.cross_entropy(model(inputs[batch]), labels[batch])
            if args.bug != "loss_not_divided":
                loss = loss / args.accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        print(f"step {step} loss {loss.item():.4f}", flush=True)


if __name__ == "__main__":
    main()
