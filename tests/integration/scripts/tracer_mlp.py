"""Tiny deterministic training run used by the tracer's integration tests.

Prints one ``loss <step> <value>`` line per step (full float repr, so traced and
untraced runs can be compared bit for bit) and ``pid <pid>`` first.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 32)
        self.fc2 = torch.nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--start-method", default=None)
    args = parser.parse_args()
    print(f"pid {os.getpid()}", flush=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(64 * args.steps, 16, generator=gen)
    y = torch.randint(0, 4, (64 * args.steps,), generator=gen)
    loader = DataLoader(
        TensorDataset(x, y),
        batch_size=64,
        num_workers=args.workers,
        multiprocessing_context=args.start_method if args.workers else None,
    )
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    started = time.perf_counter()
    for step, (xb, yb) in enumerate(loader):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
        print(f"loss {step} {loss.item()!r}", flush=True)
    model.zero_grad(set_to_none=False)
    with torch.no_grad():
        model.eval()
        model(x[:8])
    print(f"elapsed_s {time.perf_counter() - started:.3f}", flush=True)


if __name__ == "__main__":
    main()
