"""``str(dtype)`` and ``str(device)``, cached: both are asked for on every traced call.

``str(torch.device)`` builds its text anew each time (~0.5 us); events carry these
names for every tensor argument, result and variable state, so one dict lookup
instead is worth a module of its own, shared by the summaries and the state points.
"""

from __future__ import annotations

import torch

_DTYPE_NAMES: dict[torch.dtype, str] = {}
_DEVICE_NAMES: dict[torch.device, str] = {}


def dtype_name(dtype: torch.dtype) -> str:
    """``"torch.float32"`` for ``torch.float32``."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype)
    return name


def device_name(device: torch.device) -> str:
    """``"cpu"``, ``"cuda:0"``..."""
    name = _DEVICE_NAMES.get(device)
    if name is None:
        name = _DEVICE_NAMES[device] = str(device)
    return name
