"""Exercises every API family the tracer covers beyond the core loop (few steps, CPU).

clip_grad_norm_, an lr scheduler, DataLoader epochs, Module.train/eval/to/
load_state_dict, BatchNorm buffers, torch.autocast and traincheck.annotate, and a
module call that raises (caught here) followed by one that does not.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import traincheck

model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
loader = DataLoader(TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,))), batch_size=8)
model.train()
for _epoch in range(2):
    for x, y in loader:
        optimizer.zero_grad()
        with traincheck.annotate(phase="fwd"), torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    scheduler.step()
model.eval()
model.to(torch.float32)
model.load_state_dict(model.state_dict())
try:
    model(torch.randn(3, 5))  # wrong feature count: raises inside the first Linear
except RuntimeError:
    pass
model(torch.randn(3, 4))
print("ok")
