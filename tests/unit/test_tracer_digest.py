"""Digests cover every element and never disturb the tensors or the RNG."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import xxhash

from traincheck.tracer.digest import device_digest, grad_state, grad_states, tensor_digest


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("position", [0, 500, 999])
def test_single_element_change_changes_digest(dtype: torch.dtype, position: int) -> None:
    base = torch.linspace(-3, 3, 1000, dtype=dtype)
    changed = base.clone()
    changed[position] += 1
    assert tensor_digest(base) != tensor_digest(changed)
    flat, flat_changed = base.reshape(-1), changed.reshape(-1)
    assert device_digest(flat) != device_digest(flat_changed)


def test_equal_tensors_have_equal_digests() -> None:
    a = torch.randn(7, 5, generator=torch.Generator().manual_seed(3))
    assert tensor_digest(a) == tensor_digest(a.clone())
    assert tensor_digest(a.t()) == tensor_digest(a.t().contiguous())
    assert device_digest(a.reshape(-1)) == device_digest(a.clone().reshape(-1))


def test_swapped_elements_change_device_digest() -> None:
    a = torch.arange(100, dtype=torch.float32)
    b = a.clone()
    b[[3, 70]] = b[[70, 3]]
    assert device_digest(a) != device_digest(b)


def test_digest_reads_parameters_and_scalars() -> None:
    param = torch.nn.Parameter(torch.ones(3, 3))
    assert isinstance(tensor_digest(param), int)
    assert tensor_digest(torch.tensor(1.0)) != tensor_digest(torch.tensor(2.0))
    assert tensor_digest(torch.empty(0)) == tensor_digest(torch.empty(0, 4))


def test_digest_changes_no_value_and_no_rng_state() -> None:
    torch.manual_seed(11)
    a = torch.randn(64, 64, requires_grad=True)
    before = a.detach().clone()
    rng = torch.get_rng_state()
    tensor_digest(a)
    device_digest(a.detach().reshape(-1))
    grad_states([a.grad, torch.zeros(3), torch.ones(3)])
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(a.detach(), before)
    assert a.grad is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_grad_state(dtype: torch.dtype) -> None:
    assert grad_state(None) == "none"
    assert grad_state(torch.zeros(10, dtype=dtype)) == "zero"
    assert grad_state(-torch.zeros(10, dtype=dtype)) == "zero"
    one_hot = torch.zeros(10, dtype=dtype)
    one_hot[9] = 1e-3
    assert grad_state(one_hot) == "nonzero"
    middle_only = torch.zeros(10, dtype=dtype)
    middle_only[4] = -2.0
    assert grad_state(middle_only) == "nonzero"
    assert grad_state(torch.full((2,), float("nan"), dtype=dtype)) == "nonzero"


def test_grad_states_keeps_order() -> None:
    grads = [torch.ones(2), None, torch.zeros(2), torch.ones(2, 2).t()]
    assert grad_states(grads) == ["nonzero", "none", "zero", "nonzero"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(7, 5),
        lambda: torch.randn(7, 5).t(),  # strided: general route
        lambda: torch.tensor(3.5),  # 0-d: general route
        lambda: torch.randn(6, dtype=torch.bfloat16),  # numpy has no bfloat16
        lambda: torch.arange(12, dtype=torch.int64).reshape(3, 4),
        lambda: torch._neg_view(torch.randn(4)),  # negative bit: general route
        lambda: torch.nn.Parameter(torch.randn(3, 3)),
    ],
)
def test_fast_cpu_path_gives_the_digest_of_the_raw_bytes(make: Callable[[], torch.Tensor]) -> None:
    """The zero-copy numpy route and the general one must agree byte for byte, or a
    tensor would seem to change when it moves from one route to the other."""
    tensor = make()
    expected = xxhash.xxh3_64_intdigest(
        tensor.detach().resolve_neg().contiguous().reshape(-1).view(torch.uint8).numpy()
    )
    assert tensor_digest(tensor) == expected


def test_grad_state_of_a_negative_view_uses_its_values() -> None:
    grad = torch._neg_view(torch.tensor([0.0, -1.0]))
    assert grad_states([grad, torch._neg_view(torch.zeros(3))]) == ["nonzero", "zero"]


@pytest.mark.parametrize("position", [0, 1, 4097, 65535, 30001])
def test_a_single_nonzero_anywhere_makes_the_gradient_nonzero(position: int) -> None:
    """The sampled look-ahead is only a shortcut: off the sample, the full scan decides."""
    grad = torch.zeros(128, 512)
    grad.view(-1)[position] = 1e-30
    assert grad_states([grad, torch.zeros(128, 512)]) == ["nonzero", "zero"]
