"""The optimizer's own step count, read at ``Optimizer.step`` (``state_step``)."""

from __future__ import annotations

import torch

from traincheck.tracer.summaries import STATE_STEP_ARG, optimizer_args, state_step


def _stepped(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], n: int) -> None:
    for _ in range(n):
        for p in params:
            p.grad = torch.ones_like(p)
        optimizer.step()


def test_adam_counts_its_steps_and_a_fresh_one_starts_at_zero() -> None:
    params = [torch.nn.Parameter(torch.zeros(3))]
    adam = torch.optim.Adam(params, lr=0.1)
    assert state_step(adam) == 0
    _stepped(adam, params, 3)
    assert state_step(adam) == 3
    resumed = torch.optim.Adam(params, lr=0.1)
    resumed.load_state_dict(adam.state_dict())
    assert state_step(resumed) == 3, "a loaded state carries the count on"
    assert state_step(torch.optim.Adam(params, lr=0.1)) == 0, "a forgotten load restarts it"
    assert any(a.name == STATE_STEP_ARG and a.value == 3 for a in optimizer_args(adam))


def test_an_optimizer_without_a_count_records_none() -> None:
    params = [torch.nn.Parameter(torch.zeros(3))]
    sgd = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    _stepped(sgd, params, 2)
    assert state_step(sgd) is None, "SGD's state holds a momentum buffer, no count"
    assert all(a.name != STATE_STEP_ARG for a in optimizer_args(sgd))
    empty = torch.optim.SGD([{"params": []}], lr=0.1)
    assert state_step(empty) is None
