"""A 2-rank data-parallel loop (DDP, gloo, CPU) slow enough to attach to mid-run.

``python ddp_slow_train.py`` re-executes itself under torchrun with 2 ranks, as
the DDP examples do; rank 0 prints one line per step.
"""

import argparse
import os
import sys
import time

if "RANK" not in os.environ:
    sys.stdout.flush()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    os.execv(sys.executable, [*torchrun, "--nproc-per-node", "2", __file__, *sys.argv[1:]])

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--sleep-s", type=float, default=0.02)
args = parser.parse_args()

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = DistributedDataParallel(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
generator = torch.Generator().manual_seed(rank)
inputs, targets = torch.randn(64, 16, generator=generator), torch.randint(0, 4, (64,))
for step in range(args.steps):
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(inputs), targets)
    loss.backward()
    optimizer.step()
    if rank == 0:
        print(f"step {step} loss {loss.item():.6f}", flush=True)
    time.sleep(args.sleep_s)
dist.destroy_process_group()
