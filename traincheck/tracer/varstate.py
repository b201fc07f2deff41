"""Build ``VarState`` events for a set of named parameters at one point of a call.

All parameters of one point share a timestamp, and their gradient states are
computed together (one device sync at most). A tensor whose contents cannot be
read (meta, sparse, exotic subclasses) gets no digest; the failure is counted by
the tracer, never raised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch

from traincheck.events import VarState
from traincheck.tracer.digest import digest_in_no_grad, grad_states_in_no_grad

if TYPE_CHECKING:
    from traincheck.tracer.runtime import Tracer

Phase = Literal["pre", "post", "init"]

_DTYPE_NAMES: dict[torch.dtype, str] = {}


def param_states(
    tracer: Tracer,
    call_id: int,
    phase: Phase,
    params: Sequence[tuple[str, torch.Tensor]],
    *,
    with_digest: bool,
) -> list[VarState]:
    """One ``VarState`` per ``(name, tensor)``, in order."""
    if not params:
        return []
    ts_ns = time.monotonic_ns()
    thread = threading.get_ident()
    step, stage = tracer.meta.step, tracer.meta.stage
    states = []
    with torch.no_grad():
        grads = grad_states_in_no_grad([p.grad for _, p in params])
        for (name, param), grad in zip(params, grads, strict=True):
            states.append(
                VarState(
                    ts_ns,
                    call_id,
                    phase,
                    thread,
                    step,
                    stage,
                    name,
                    _var_type(param),
                    tuple(param.shape),
                    _dtype_name(param.dtype),
                    str(param.device),
                    param.requires_grad,
                    grad,
                    _digest(tracer, param) if with_digest else None,
                )
            )
    return states


def _var_type(param: torch.Tensor) -> str:
    # Parameter's metaclass makes isinstance slow; the exact type is the common case.
    if type(param) is torch.nn.Parameter or isinstance(param, torch.nn.Parameter):
        return "torch.nn.Parameter"
    return "torch.Tensor"


def _digest(tracer: Tracer, param: torch.Tensor) -> int | None:
    try:
        return digest_in_no_grad(param)
    except Exception as exc:
        tracer.report_error(f"digest of {type(param).__name__} on {param.device}", exc)
        return None


def _dtype_name(dtype: torch.dtype) -> str:
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype)
    return name
