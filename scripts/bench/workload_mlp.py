"""Benchmark workload: a small MLP (or CNN) on synthetic MNIST-shaped data, ~70 steps.

Prints one ``steptime_ns <n>`` line per step (wall time of zero_grad + forward +
backward + step) and the loss, so a benchmark can compare per-step cost between
an untraced run, our tracer and the published TrainCheck, measured the same way.
The first steps are warm-up and reported separately by the benchmark.

``--model mlp`` (default) is the harsh case for a Python-level tracer: a ~2 ms
step, so the tracer's fixed cost per step shows at its largest. ``--model cnn``
(LeNet-style, two convolutions) is the other "small CNN on MNIST" the overhead
targets speak of, with a step several times longer.
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=70)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(args.seed)
generator = torch.Generator().manual_seed(1234)
inputs = torch.randn(args.steps, 64, 1, 28, 28, generator=generator)
labels = torch.randint(0, 10, (args.steps, 64), generator=generator)

if args.model == "mlp":
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256),
        nn.ReLU(),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )
else:
    model = nn.Sequential(
        nn.Conv2d(1, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
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
