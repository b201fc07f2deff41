"""A training loop slow enough for a test to interfere with it mid-run.

Prints one line per step; sleeps between steps; exits with --exit-code so the
test can check that the launcher returns the job's own code.
"""

import argparse
import sys
import time

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--sleep-s", type=float, default=0.02)
parser.add_argument("--exit-code", type=int, default=0)
parser.add_argument(
    "--timestamps", action="store_true", help="end each step line with t=<monotonic s>"
)
args = parser.parse_args()

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
inputs, targets = torch.randn(64, 16), torch.randint(0, 4, (64,))
started = time.monotonic()
for step in range(args.steps):
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(inputs), targets)
    loss.backward()
    optimizer.step()
    stamp = f" t={time.monotonic():.6f}" if args.timestamps else ""
    print(f"step {step} loss {loss.item():.6f}{stamp}", flush=True)
    time.sleep(args.sleep_s)
print(f"done in {time.monotonic() - started:.3f} s", flush=True)
sys.exit(args.exit_code)
