"""Benchmark workload: a small MLP (or CNN) on synthetic MNIST-shaped data, ~70 steps.

Prints one ``steptime_ns <n>`` line per step (wall time of zero_grad + forward +
backward + step) and the loss, so a benchmark can compare per-step cost between
an untraced run, our tracer and the published TrainCheck, measured the same way.
The first steps are warm-up and reported separately by the benchmark.

``--model mlp`` (default) is the harsh case for a Python-level tracer: a ~2 ms
step, so the tracer's fixed cost per step shows at its largest. ``--model cnn``
(LeNet-style, two convolutions) is the other "small CNN on MNIST" the overhead
targets speak of, with a step several times longer. ``--model mnist`` is the
network of PyTorch's own MNIST example (``pytorch/examples`` mnist/main.py: two
3x3 convolutions of 32 and 64 channels, dropout, a 9216-128-10 head, Adadelta
at lr 1.0), the script the published TrainCheck's overhead is usually quoted on;
its step is ~75 ms on one thread here.
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=70)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--model", choices=("mlp", "cnn", "mnist"), default="mlp")
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
elif args.model == "cnn":
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
else:

    class Net(nn.Module):
        """pytorch/examples mnist/main.py's network, as written there."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(9216, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu(self.conv1(x))
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = torch.flatten(self.dropout1(x), 1)
            x = self.dropout2(F.relu(self.fc1(x)))
            return F.log_softmax(self.fc2(x), dim=1)

    model = Net()
if args.model == "mnist":
    optimizer: torch.optim.Optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    loss_of = F.nll_loss
else:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_of = F.cross_entropy
model.train()
for step in range(args.steps):
    started = time.perf_counter_ns()
    optimizer.zero_grad()
    loss = loss_of(model(inputs[step]), labels[step])
    loss.backward()
    optimizer.step()
    elapsed = time.perf_counter_ns() - started
    print(f"steptime_ns {elapsed} loss {loss.item()!r}", flush=True)
