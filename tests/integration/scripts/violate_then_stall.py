"""One healthy step, then a forward pass without ``zero_grad`` (a violation), then
the job goes quiet for ``--stall-s`` seconds: no event follows the violating one.

Used to check that the sidecar prints a held alert while the job is silent,
instead of waiting for the next event or the end of the run.
"""

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples" / "silent_bugs"))
from synthetic import MLP, make_loader

parser = argparse.ArgumentParser()
parser.add_argument("--stall-s", type=float, default=8.0)
args = parser.parse_args()

torch.manual_seed(3)
model = MLP()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
inputs, labels = next(iter(make_loader(32, 3)))
optimizer.zero_grad()
F.cross_entropy(model(inputs), labels).backward()
optimizer.step()
model(inputs)  # VIOLATING-LINE: no zero_grad before this forward pass
print(f"stalling at {time.monotonic():.3f}", flush=True)
time.sleep(args.stall_s)
