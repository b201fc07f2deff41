"""A training loop whose model raises inside a sub-layer's forward at step 3.

The traceback the job prints must be the same traced and untraced: the exception
crosses the tracer's wrappers (the outermost module call, the sub-module call, the
functional call), and none of their frames may show.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Faulty(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 4:
            raise ValueError("bad batch at step 3")
        return F.relu(x)


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.act = Faulty()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


def main() -> None:
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(6):
        optimizer.zero_grad()
        loss = model(torch.randn(8, 4)).pow(2).mean()
        loss.backward()
        optimizer.step()
        print(f"step {step} loss {loss.item():.6f}", flush=True)


if __name__ == "__main__":
    main()
