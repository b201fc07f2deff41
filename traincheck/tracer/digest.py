"""Content digests and gradient states of tensors, read without changing them.

A digest covers every element, so a single flipped value anywhere in a parameter
changes it; sampling or norms would miss exactly the silent bugs we look for
(one stale shard, one layer not updated). CPU tensors are hashed with xxh3 over
their raw bytes, zero-copy through numpy. Tensors on an accelerator are reduced
on the device to one 64-bit number (one host sync) instead of being copied to the
host. The two schemes give different numbers for the same content: digests are
comparable between tensors on the same kind of device, which is what the
checks compare (pre/post of one step, one parameter across ranks).

Digests are computed here, in the training process, at every tensor size. The
alternative -- copy the tensor into a shared-memory segment and let the sidecar
hash it outside our GIL -- was measured (``scripts/bench/digest_paths.py``,
BENCHMARKS.md "Shared-memory digests"): the copy alone costs the training thread
as much as the xxh3 pass below 1 MiB and 1.6-2.5x more above it, because xxh3
reads memory at close to copy speed and a copy also has to write it. So no
segment is ever created and there is nothing to clean up after a crash.

Nothing here draws random numbers, records autograd history or writes to a
tensor: tracing must never change what the training computes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xxhash

from traincheck.events import GradState

_INT_BY_ITEMSIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
"""Integer dtype of the same width, to read any element type as raw bits."""

_DEVICE_CHUNK = 1 << 22
"""Elements reduced per device chunk: bounds the int64 temporaries to 32 MiB each."""

_MIX_1 = 0x9E3779B97F4A7C15 - (1 << 64)
_MIX_2 = 0xBF58476D1CE4E5B9 - (1 << 64)
"""Odd 64-bit constants (golden ratio, splitmix64) as signed int64 for torch."""

_NUMPY_FLOATS = frozenset({torch.float16, torch.float32, torch.float64})
"""Gradient dtypes numpy reads natively; bfloat16 is tested on its raw bits."""

_ANY_SAMPLE = 1024
"""Elements of a gradient looked at (a block, then a spread-out sample) before a
full scan for a nonzero."""

_BF16_MAGNITUDE = 0x7FFF
"""Every bfloat16 bit except the sign: nonzero exactly when the value is not +-0."""


def tensor_digest(tensor: torch.Tensor) -> int:
    """Digest of every element of ``tensor`` (its bytes; shape and dtype excluded).

    Raises for tensors without readable storage (meta, sparse, some wrapper
    subclasses); callers count that and record no digest.
    """
    with torch.no_grad():
        return digest_in_no_grad(tensor)


def digest_in_no_grad(tensor: torch.Tensor) -> int:
    """:func:`tensor_digest` for callers already inside ``torch.no_grad()`` (one per batch)."""
    array = cpu_bytes_view(tensor)
    if array is not None:
        return xxhash.xxh3_64_intdigest(array)  # type: ignore[arg-type]  # numpy: a buffer
    flat = _flat(tensor)
    if flat.device.type == "cpu":
        return cpu_digest(flat)
    return device_digest(flat)


def cpu_bytes_view(tensor: torch.Tensor) -> np.ndarray | None:
    """The tensor's memory as a contiguous numpy array, without a copy, or None.

    The fast path for the common case (a dense, contiguous CPU tensor of a dtype
    numpy knows): ``detach().numpy()`` shares the storage and costs under 1 us,
    against ~2.5 us for the general route through :func:`_flat`. The bytes are
    the same, so digests agree between the two. None sends the caller down the
    general route (bfloat16, conjugate/negative views, strided or 0-d tensors,
    other devices).
    """
    if tensor.device.type != "cpu":
        return None
    try:
        array = tensor.detach().numpy()
    except (TypeError, RuntimeError):
        return None
    if not array.ndim or not array.flags.c_contiguous:
        return None
    return array


def cpu_digest(flat: torch.Tensor) -> int:
    """xxh3 over the raw bytes of a contiguous, at least 1-D CPU tensor, without a copy."""
    return xxhash.xxh3_64_intdigest(flat.view(torch.uint8).numpy())  # type: ignore[arg-type]


def device_digest(flat: torch.Tensor) -> int:
    """A position-weighted sum of the raw bits, computed where the tensor lives.

    Each element's bits (as a signed integer) are multiplied by an odd weight
    derived from its index and summed modulo 2**64. An odd weight is invertible
    modulo 2**64, so changing any single element always changes the sum; the
    index mixing makes swapped elements change it too. One ``.item()`` per tensor.
    Runs on any device (the unit tests exercise it on CPU); takes a contiguous tensor.
    """
    bits = flat.reshape(-1).view(_INT_BY_ITEMSIZE[flat.element_size()])
    total = torch.zeros((), dtype=torch.int64, device=flat.device)
    for start in range(0, bits.numel(), _DEVICE_CHUNK):
        chunk = bits[start : start + _DEVICE_CHUNK].to(torch.int64)
        index = torch.arange(start, start + chunk.numel(), dtype=torch.int64, device=flat.device)
        weight = index * _MIX_1
        weight = (weight ^ (weight >> 29)) * _MIX_2
        total += (chunk * (weight | 1)).sum()
    return xxhash.xxh3_64_intdigest(int(total.item()).to_bytes(8, "little", signed=True))


def grad_states(grads: Sequence[torch.Tensor | None]) -> list[GradState]:
    """``none`` / ``zero`` / ``nonzero`` for each gradient, with at most one device sync.

    ``zero`` means no element differs from zero (``-0.0`` counts as zero, NaN
    does not), matching ``not grad.any()``.
    """
    with torch.no_grad():
        return grad_states_in_no_grad(grads)


def grad_states_in_no_grad(grads: Sequence[torch.Tensor | None]) -> list[GradState]:
    """:func:`grad_states` for callers already inside ``torch.no_grad()``."""
    states: list[GradState] = ["none"] * len(grads)
    on_device: list[tuple[int, torch.Tensor]] = []
    for i, grad in enumerate(grads):
        if grad is None:
            continue
        if grad.device.type == "cpu" and not grad.is_sparse:
            states[i] = "nonzero" if _cpu_any(grad) else "zero"
        else:
            on_device.append((i, grad))
    if on_device:
        device = on_device[0][1].device
        flags = torch.stack([g.detach().any().to(device=device) for _, g in on_device])
        for (i, _), flag in zip(on_device, flags.tolist(), strict=True):
            states[i] = "nonzero" if flag else "zero"
    return states


def grad_state(grad: torch.Tensor | None) -> GradState:
    """The gradient state of one tensor (see :func:`grad_states`)."""
    return grad_states([grad])[0]


def _flat(tensor: torch.Tensor) -> torch.Tensor:
    """A detached, contiguous, at least 1-D view (a copy only if not contiguous).

    Contiguous tensors are not flattened: xxh3 and numpy read them as one run of
    memory anyway, and every avoided view is a dispatch saved on the hot path.
    """
    flat = tensor.detach()
    if flat.is_conj():
        flat = flat.resolve_conj()
    if flat.is_neg():
        flat = flat.resolve_neg()
    if not flat.is_contiguous():
        flat = flat.contiguous()
    if flat.dim() == 0:
        flat = flat.reshape(1)
    return flat


def _cpu_any(grad: torch.Tensor) -> bool:
    """``grad.any()`` through numpy: a few times cheaper than a torch reduction on CPU.

    numpy's ``any`` reads the whole array (no early exit), 12-21 us for a 256x784
    gradient. A gradient almost always has a nonzero among its first and last
    elements, in a contiguous block from its middle, or in a spread-out sample
    (rows zeroed by dead ReLU units are the usual exception to the first two),
    so those are looked at first, cheapest first: a contiguous block reads 64
    cache lines where the spread-out sample touches a thousand (1.0 vs 2.0 us
    warm). Only an all-zero look costs the full scan.
    """
    array = cpu_bytes_view(grad)
    if array is None:  # strided, 0-d, bfloat16 or negative views: made contiguous
        flat = _flat(grad)
        if flat.dtype in _NUMPY_FLOATS:
            array = flat.numpy()
        elif flat.dtype == torch.bfloat16:
            array = np.bitwise_and(flat.view(torch.int16).numpy(), _BF16_MAGNITUDE)
        else:
            return bool(flat.any())
    array = array.reshape(-1)  # contiguous here: a view
    size = array.size
    if not size:
        return False
    if array[0] or array[-1]:
        return True
    middle = size // 2
    if array[middle : middle + _ANY_SAMPLE].any():
        return True
    if array[:: max(1, size // _ANY_SAMPLE)].any():
        return True
    return bool(array.any())
