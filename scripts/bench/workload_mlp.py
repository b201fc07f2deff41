"""Benchmark workload: a small MLP on synthetic MNIST-shaped data, ~70 optimizer steps.

Prints one ``steptime_ns <n>`` line per step (wall time of zero_grad + forward +
backward + step) and the loss, so a benchmark can compare per-step cost between
an untraced run, our tracer and the published TrainCheck, measured the same way.
The first steps are warm-up and reported separately by the benchmark.
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=70)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(args.seed)
generator = torch.Generator().manual_seed(1234)
inputs = torch.randn(args.steps, 64, 1, 28, 28, generator=generator)
labels = torch.randint(0, 10, (args.steps, 64), generator=generator)

model = nn.Sequential(
    nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
model.train()
for step in range(args.steps):
    started = time.perf_counter_ns()
    optimizer.zero_grad()
    loss = F.cross_entropy(model(inputs[step]), labels[step])
    loss.backward()
    optimizer.step()
    elapsed = time.perf_counter_ns() - started
    print(f"steptime_ns {elapsed} loss {loss.item()!r}", flush=True)
