"""The values of one-element tensors the training loop computes anyway: the loss
``backward()`` is called on, the total norm ``clip_grad_norm_`` returns.

NumericRange (``traincheck.analysis.relations.numeric_range``) learns the range of
these values from healthy runs; a loss the accumulation loop forgot to divide, or
gradients left scaled by a GradScaler, move them by a constant factor that no
digest or gradient state shows.

A value is read only from a tensor on the CPU, where ``.item()`` is a memory
read (about a microsecond). A CUDA tensor is skipped, never read: ``.item()``
there waits for every queued kernel, a host sync on the training thread at each
step, which is exactly the cost the tracer must never add. Anything that cannot be
read plainly (meta, fake and wrapper tensors under ``torch.compile`` or functorch)
is skipped the same way.
"""

from __future__ import annotations

import msgspec
import torch

from traincheck.catalogue import LOSS_ARG
from traincheck.events import ArgValue


def cpu_scalar(value: object) -> float | None:
    """The value of a one-element floating-point CPU tensor, or None (not read).

    NaN and infinity are kept: a loss that overflowed is what a range must see.
    Checks are ordered cheapest first (``is_cpu`` is a flag, ``device.type``
    builds an object; ``item()`` needs no ``detach()``: it records no graph), and
    the dtype is judged by the Python type ``item()`` returns: about 1 us a call.
    """
    if not isinstance(value, torch.Tensor) or not value.is_cpu or value.numel() != 1:
        return None
    try:
        number = value.item()
    except Exception:
        return None  # no readable storage (fake, meta, functorch wrappers)
    return number if isinstance(number, float) else None


def loss_args(args: tuple[object, ...]) -> tuple[ArgValue, ...]:
    """``loss``: the value ``Tensor.backward`` was called on, when it can be read.

    Kind ``tensor`` (a value the training computed, not a setting it was given)
    with no metadata: the value relations learn dtype/device/requires_grad of
    tensors and never use float values, so they see nothing new at backward.
    """
    number = cpu_scalar(args[0]) if args else None
    return () if number is None else (ArgValue(LOSS_ARG, "tensor", number),)


def with_scalar(summary: ArgValue, value: object) -> ArgValue:
    """A tensor's summary with its value added, when it is a readable one-element tensor.

    The value sits in ``ArgValue.value``, which no relation but NumericRange reads
    for tensors as a float (DistinctArgument reads only integer digests).
    """
    number = cpu_scalar(value)
    return summary if number is None else msgspec.structs.replace(summary, value=number)
