"""Per-step time of a small MLP on CPU, for measuring tracing overhead."""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(128, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(64, 128)
    y = torch.randint(0, 10, (64,))
    for phase in ("warmup", "timed"):
        started = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        if phase == "timed":
            print(f"step_us {(time.perf_counter() - started) / steps * 1e6:.1f}", flush=True)


if __name__ == "__main__":
    main()
