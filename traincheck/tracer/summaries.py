"""Small typed summaries (``ArgValue``) of API arguments and results.

Scalars keep their value; tensors keep metadata only (their content goes into
digests); anything else is named by its type. Never the object itself: events
must stay small and must not keep user objects alive.
"""

from __future__ import annotations

import msgspec
import torch

from traincheck.events import ArgValue
from traincheck.tracer.digest import digest_in_no_grad
from traincheck.tracer.models import unwrap_compiled
from traincheck.tracer.param_groups import decay_by_kind
from traincheck.tracer.typenames import device_name, dtype_name


def summarize(name: str, value: object) -> ArgValue:
    """The ``ArgValue`` for one argument or return value."""
    if value is None:
        return ArgValue(name, "none")
    if isinstance(value, bool):
        return ArgValue(name, "bool", value)
    if isinstance(value, int):
        return ArgValue(name, "int", value)
    if isinstance(value, float):
        return ArgValue(name, "float", value)
    if isinstance(value, str):
        return ArgValue(name, "str", value)
    if isinstance(value, torch.Tensor):
        return ArgValue(
            name,
            "tensor",
            shape=tuple(value.shape),
            dtype=dtype_name(value.dtype),
            device=device_name(value.device),
            requires_grad=value.requires_grad,
        )
    if isinstance(value, (torch.device, torch.dtype)):
        return ArgValue(name, type(value).__name__, str(value))
    if isinstance(value, torch.nn.Module):
        return ArgValue(name, "module", type(value).__name__)
    if isinstance(value, torch.optim.Optimizer):
        return ArgValue(name, "optimizer", type(value).__name__)
    if isinstance(value, (tuple, list)):
        return ArgValue(name, "seq", len(value))
    return ArgValue(name, "other", type(value).__name__)


_MODULE_ARGS: dict[tuple[type, bool], tuple[ArgValue, ...]] = {}


def module_call_args(module: torch.nn.Module) -> tuple[ArgValue, ...]:
    """``module`` (class name) and ``training`` for a module call, cached per class and mode.

    A ``torch.compile`` wrapper is described by the model it compiles, so turning
    compile off (a normal debugging step) does not read as another model.
    """
    module = unwrap_compiled(module)
    key = (type(module), bool(module.training))
    args = _MODULE_ARGS.get(key)
    if args is None:
        args = _MODULE_ARGS[key] = (
            ArgValue("module", "module", type(module).__name__),
            ArgValue("training", "bool", key[1]),
        )
    return args


MAX_INPUT_DIGEST_BYTES = 1 << 20
"""Inputs larger than this are digested over an evenly strided subset of each sample's
elements (a copy of at most this many bytes), so the cost per forward pass stays bounded
(about 12 us for a 64x784 float32 batch, BENCHMARKS.md) whatever the batch size."""


def module_input_arg(args: object, *, with_digest: bool) -> tuple[ArgValue, ...]:
    """``input``: the first positional tensor fed to an outermost module call.

    Its metadata lets ConsistentInputOutput relate the result's dtype/device to the
    input's; with ``with_digest`` (CPU tensors only: a device reduction would cost
    a host sync per forward pass) ``value`` holds a content digest of the batch, so
    DistinctArgument can tell whether ranks, or consecutive steps, saw the same data.
    Empty when the first positional argument is not a tensor.
    """
    if not isinstance(args, tuple) or not args or not isinstance(args[0], torch.Tensor):
        return ()
    tensor = args[0]
    arg = summarize("input", tensor)
    if with_digest and tensor.device.type == "cpu" and tensor.numel() > 0:
        digest = _batch_digest(tensor)
        if digest is not None:
            arg = msgspec.structs.replace(arg, value=digest)
    return (arg,)


def _batch_digest(tensor: torch.Tensor) -> int | None:
    # Detached first instead of ``torch.no_grad()`` (1.3 us per forward pass):
    # nothing below can then record autograd history.
    try:
        tensor = tensor.detach()
        if tensor.numel() * tensor.element_size() > MAX_INPUT_DIGEST_BYTES:
            rows = tensor.reshape(tensor.shape[0] if tensor.dim() else 1, -1)
            stride = -(-tensor.numel() * tensor.element_size() // MAX_INPUT_DIGEST_BYTES)
            tensor = rows[:, ::stride].contiguous()
        return digest_in_no_grad(tensor)
    except Exception:
        return None  # no readable storage (meta, sparse, wrapper subclasses): no digest


_GROUP_HYPERPARAMETERS = ("lr", "momentum")
"""Optimizer settings recorded per param group: what schedulers and bugs change."""

MAX_GROUPS_SUMMARIZED = 8
"""Param groups beyond this many are not summarized (events stay small)."""


STATE_STEP_ARG = "state_step"


def optimizer_args(optimizer: torch.optim.Optimizer) -> tuple[ArgValue, ...]:
    """``optimizer`` (class name), ``lr``/``momentum`` of each param group, which
    kinds of parameter are weight-decayed (:mod:`~traincheck.tracer.param_groups`),
    and the optimizer's own count of the steps it took (``state_step``).

    Group 0's values are ``lr`` and ``momentum``; group ``i`` adds ``lr[i]``...
    Settings held as tensors (``capturable`` optimizers on a device) are left
    out rather than read, which would cost a device sync.
    """
    args = [ArgValue("optimizer", "optimizer", type(optimizer).__name__)]
    for index, group in enumerate(optimizer.param_groups[:MAX_GROUPS_SUMMARIZED]):
        suffix = f"[{index}]" if index else ""
        for key in _GROUP_HYPERPARAMETERS:
            value = group.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                args.append(ArgValue(f"{key}{suffix}", "float", float(value)))
    args.extend(decay_by_kind(optimizer))
    steps = state_step(optimizer)
    if steps is not None:
        args.append(ArgValue(STATE_STEP_ARG, "int", steps))
    return tuple(args)


def state_step(optimizer: torch.optim.Optimizer) -> int | None:
    """How many steps the optimizer's state says it took (Adam's ``state[p]["step"]``
    for the first parameter), read before the step: 0 while the state is empty.

    An optimizer re-created on resume without ``load_state_dict`` (its moments
    lost) restarts this count while the training goes on; nothing else in the
    trace shows it. None for an optimizer that keeps no count (SGD's momentum
    buffer) or keeps it on a device (a fused or capturable optimizer: reading it
    would cost a sync).
    """
    try:
        first = optimizer.param_groups[0]["params"][0]
        entry = optimizer.state.get(first)
    except (IndexError, KeyError, AttributeError, TypeError):
        return None
    if not entry:
        return 0
    step = entry.get("step") if isinstance(entry, dict) else None
    if isinstance(step, torch.Tensor):
        if step.device.type != "cpu" or step.numel() != 1:
            return None
        step = step.item()
    if isinstance(step, bool) or not isinstance(step, (int, float)):
        return None
    return int(step)
