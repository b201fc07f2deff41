"""The canonical API names the tracer emits, defined once and importable without torch.

The hooks use these names; :mod:`traincheck.analysis.instrumentation` uses them to tell which
APIs an invariants file needs that no tracer hook can produce (those invariants
are uncheckable unless ``--modules-to-instr`` wraps a module that provides them).
"""

from __future__ import annotations

OPTIMIZER_STEP = "torch.optim.Optimizer.step"
OPTIMIZER_ZERO_GRAD = "torch.optim.Optimizer.zero_grad"
MODULE_ZERO_GRAD = "torch.nn.Module.zero_grad"
TENSOR_BACKWARD = "torch.Tensor.backward"
AUTOGRAD_BACKWARD = "torch.autograd.backward"
MODULE_CALL = "torch.nn.Module.__call__"
CLIP_GRAD_NORM = "torch.nn.utils.clip_grad_norm_"
CLIP_GRAD_VALUE = "torch.nn.utils.clip_grad_value_"
SCHEDULER_STEP = "torch.optim.lr_scheduler.LRScheduler.step"
DATALOADER_ITER = "torch.utils.data.DataLoader.__iter__"
MODULE_TRAIN = "torch.nn.Module.train"
MODULE_EVAL = "torch.nn.Module.eval"
MODULE_TO = "torch.nn.Module.to"
MODULE_LOAD_STATE_DICT = "torch.nn.Module.load_state_dict"
SUBMODULE_CALL = "torch.nn.Module.forward"
"""Every module call *below* the outermost one (``MODULE_CALL``), with the module's
qualified name (``MLP.block1.attn``): a separate name, so the invariants of the whole
model's call keep their meaning and the sub-layers get their own."""

FUNCTIONAL_APIS = tuple(
    f"torch.nn.functional.{name}"
    for name in (
        "dropout",
        "scaled_dot_product_attention",
        "layer_norm",
        "batch_norm",
        "cross_entropy",
        "nll_loss",
        "mse_loss",
    )
)
"""The ``torch.nn.functional`` calls traced with the arguments silent bugs get wrong."""

GRAD_SCALER_APIS = {
    attr: f"torch.amp.GradScaler.{attr}" for attr in ("scale", "unscale_", "step", "update")
}
"""``torch.amp.GradScaler`` methods, by attribute."""

AUTOCAST_ENTER = "torch.autocast.__enter__"
AUTOCAST_EXIT = "torch.autocast.__exit__"
SAMPLER_SET_EPOCH = "torch.utils.data.DistributedSampler.set_epoch"
SAMPLER_ITER = "torch.utils.data.Sampler.__iter__"
DATALOADER_NEXT = "torch.utils.data.DataLoader.__next__"
"""One call per batch a DataLoader iterator yields; its result carries the batch digest."""
TENSOR_REQUIRES_GRAD = "torch.Tensor.requires_grad_"
TENSOR_COPY = "torch.Tensor.copy_"
"""``copy_`` on a ``Parameter`` (the way parameters are overwritten wholesale: an EMA
swapped in, ``load_state_dict``); other tensors' copies are not traced."""
MODULE_STATE_DICT = "torch.nn.Module.state_dict"
TORCH_SAVE = "torch.save"
TORCH_LOAD = "torch.load"

CONTENT_WRITERS: frozenset[str] = frozenset({TENSOR_COPY, MODULE_LOAD_STATE_DICT})
"""Traced APIs whose job is to overwrite variables' contents: when a variable changed
where the healthy runs never changed it, their calls in between are named first."""

LOSS_ARG = "loss"
"""The ``Tensor.backward`` argument that carries the loss value (read from one-element
CPU tensors only): NumericRange bounds it, reports draw it per step."""

COLLECTIVES = (
    "all_reduce",
    "broadcast",
    "barrier",
    "all_gather",
    "all_gather_into_tensor",
    "reduce",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "all_to_all",
    "all_to_all_single",
    "gather",
    "scatter",
)
"""``torch.distributed`` functions traced as ``torch.distributed.<name>``."""

DEFAULT_APIS: frozenset[str] = frozenset(
    {
        OPTIMIZER_STEP,
        OPTIMIZER_ZERO_GRAD,
        MODULE_ZERO_GRAD,
        TENSOR_BACKWARD,
        AUTOGRAD_BACKWARD,
        MODULE_CALL,
        CLIP_GRAD_NORM,
        CLIP_GRAD_VALUE,
        SCHEDULER_STEP,
        DATALOADER_ITER,
        MODULE_TRAIN,
        MODULE_EVAL,
        MODULE_TO,
        MODULE_LOAD_STATE_DICT,
        SUBMODULE_CALL,
        *FUNCTIONAL_APIS,
        *GRAD_SCALER_APIS.values(),
        AUTOCAST_ENTER,
        AUTOCAST_EXIT,
        SAMPLER_SET_EPOCH,
        SAMPLER_ITER,
        DATALOADER_NEXT,
        TENSOR_REQUIRES_GRAD,
        TENSOR_COPY,
        MODULE_STATE_DICT,
        TORCH_SAVE,
        TORCH_LOAD,
        *(f"torch.distributed.{name}" for name in COLLECTIVES),
    }
)
"""Every API traced by default (``--modules-to-instr torch``)."""


def traceable(api: str, modules_to_instr: tuple[str, ...] = ()) -> bool:
    """Whether some hook can produce events named ``api``."""
    if api in DEFAULT_APIS:
        return True
    return any(api.startswith(f"{m}.") and m != "torch" for m in modules_to_instr)
