"""The tracer's scalar reading: values of one-element CPU tensors, nothing else."""

from __future__ import annotations

import math

import torch

from traincheck.catalogue import LOSS_ARG
from traincheck.events import ArgValue
from traincheck.tracer.scalars import cpu_scalar, loss_args, with_scalar
from traincheck.tracer.summaries import summarize


def test_reads_one_element_float_tensors_on_the_cpu() -> None:
    loss = torch.nn.Linear(3, 1)(torch.ones(2, 3)).mean()
    assert cpu_scalar(loss) == loss.item()
    assert cpu_scalar(torch.tensor([[0.5]])) == 0.5
    assert cpu_scalar(torch.tensor(1.5, dtype=torch.bfloat16)) == 1.5
    assert math.isnan(cpu_scalar(torch.tensor(float("nan"))) or 0.0), "NaN is kept"


def test_skips_what_is_not_a_readable_float_scalar() -> None:
    for value in (
        torch.tensor([1.0, 2.0]),
        torch.tensor(3),
        torch.tensor(True),
        torch.empty((), device="meta"),
        2.5,
        None,
    ):
        assert cpu_scalar(value) is None, value


def test_loss_arg_carries_the_value_without_tensor_metadata() -> None:
    (arg,) = loss_args((torch.tensor(0.25, requires_grad=True),))
    assert arg == ArgValue(LOSS_ARG, "tensor", 0.25)
    assert loss_args((torch.ones(2),)) == ()
    assert loss_args(()) == ()


def test_a_result_summary_gains_the_value_and_keeps_its_metadata() -> None:
    norm = torch.tensor(1.75)
    summary = with_scalar(summarize("result", norm), norm)
    assert summary.value == 1.75 and summary.dtype == "torch.float32" and summary.shape == ()
    vector = torch.ones(3)
    assert with_scalar(summarize("result", vector), vector).value is None
