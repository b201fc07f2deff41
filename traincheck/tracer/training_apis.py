"""Targeted wrappers where silent bugs live: functional calls, AMP, data order, checkpoints.

Like :mod:`~traincheck.tracer.apis`, each is a plain Python wrapper on one API,
installed only when the plan asks for it:

- a focused set of ``torch.nn.functional`` calls with the arguments bugs get wrong:
  ``dropout`` (``p``, ``training``), ``scaled_dot_product_attention``
  (``dropout_p``, ``is_causal``), ``layer_norm`` / ``batch_norm`` (``training``),
  ``cross_entropy`` / ``nll_loss`` / ``mse_loss`` (``reduction``, ``ignore_index``,
  ``label_smoothing``). Not ``TorchFunctionMode``: it intercepts every torch call.
- ``torch.amp.GradScaler.scale`` / ``unscale_`` / ``step`` / ``update``, and the
  autocast context's entry and exit (``device_type``, ``dtype``, ``enabled``; in
  :mod:`~traincheck.tracer.apis`, beside the ``autocast`` meta-variable), so
  the ordering relations learn "unscale_ before clip_grad_norm_", "update after
  step". ``GradScaler.step`` and the autocast entry/exit are *markers*: the call
  opens and closes at entry, so the optimizer step that ``GradScaler.step`` runs
  stays an outermost call and the ordering invariants of plain runs still apply.
- data order: ``DistributedSampler.set_epoch``, every sampler's ``__iter__`` (once
  per epoch) and each batch a DataLoader iterator yields
  (``torch.utils.data.DataLoader.__next__``), whose result carries a digest of the
  batch's first tensor over at most :data:`BATCH_DIGEST_BYTES` bytes (the
  DataOrder relation compares them across steps and epochs);
- ``Tensor.requires_grad_``, ``Module.state_dict``, ``torch.save`` / ``torch.load``
  (the ``requires_grad`` attribute setter is not wrapped: a Python property on
  ``Tensor`` would slow every read of ``requires_grad``, ours included);
- ``Tensor.copy_`` on a ``Parameter`` (no arguments recorded): the call that
  overwrites a parameter outside the optimizer, which ChangeWithin names when a
  parameter changed where the healthy runs never changed one. Every other
  tensor's ``copy_`` from Python pays the pass-through: 1.4 us per call over
  untraced, 0.45 us over a bare Python pass-through (16-element CPU tensors,
  loaded 2-core machine); copies made inside C++ (foreach optimizers, kernels) never
  reach it.

Wrappers never run while dynamo compiles (``torch.compiler.is_compiling()``, a
constant while tracing): a traced call inside a compiled graph would break it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import msgspec
import torch

from traincheck.catalogue import (
    DATALOADER_NEXT,
    FUNCTIONAL_APIS,
    GRAD_SCALER_APIS,
    MODULE_STATE_DICT,
    SAMPLER_ITER,
    SAMPLER_SET_EPOCH,
    TENSOR_COPY,
    TENSOR_REQUIRES_GRAD,
    TORCH_LOAD,
    TORCH_SAVE,
)
from traincheck.events import ArgValue
from traincheck.tracer.api_wrapper import ArgSummarizer, ResultSummarizer, traced
from traincheck.tracer.digest import digest_in_no_grad
from traincheck.tracer.patches import Patches
from traincheck.tracer.recorder import Recorder
from traincheck.tracer.summaries import summarize

BATCH_DIGEST_BYTES = 4096
"""Bytes of a batch's first tensor that its digest reads (the first ones, in memory
order): a few microseconds whatever the batch size, and enough to tell batches of
real data apart."""

_FUNCTIONAL_ARGS: dict[str, tuple[tuple[str, int, object], ...]] = {
    "dropout": (("p", 1, 0.5), ("training", 2, True)),
    "scaled_dot_product_attention": (("dropout_p", 4, 0.0), ("is_causal", 5, False)),
    "layer_norm": (),
    "batch_norm": (("training", 5, False),),
    "cross_entropy": (
        ("ignore_index", 4, -100),
        ("reduction", 6, "mean"),
        ("label_smoothing", 7, 0.0),
    ),
    "nll_loss": (("ignore_index", 4, -100), ("reduction", 6, "mean")),
    "mse_loss": (("reduction", 4, "mean"),),
}
"""Per function: (argument, position, default) of the arguments recorded, besides the
first tensor's metadata (``input``)."""


def install(tracer: Recorder, patches: Patches) -> None:
    """Wrap every API of this module the plan asks for, recording each patch in ``patches``."""
    plan = tracer.plan
    functional = torch.nn.functional
    for api in FUNCTIONAL_APIS:
        name = api.rsplit(".", 1)[1]
        original = getattr(functional, name, None)
        if plan.traces(api) and original is not None:
            args = _functional_args(_FUNCTIONAL_ARGS[name])
            _patch(patches, functional, name, _guarded(tracer, api, original, args))
    _wrap_grad_scaler(tracer, patches)
    _wrap_data(tracer, patches)
    _wrap_state(tracer, patches)


def _patch(patches: Patches, owner: object, attr: str, wrapper: Callable[..., Any]) -> None:
    patches.patch(owner, attr, wrapper)


def _guarded(
    tracer: Recorder,
    api: str,
    original: Callable[..., Any],
    args: ArgSummarizer,
    result: ResultSummarizer | None = None,
    *,
    outermost: threading.local | None = None,
    marker: bool = False,
) -> Callable[..., Any]:
    """``traced`` (or a marker, see the module docstring), bypassed while dynamo compiles."""
    inner = (
        _marker(tracer, api, original, args)
        if marker
        else traced(tracer, api, original, args, result, outermost=outermost)
    )
    compiling = torch.compiler.is_compiling

    def wrapper(*a: Any, **k: Any) -> Any:
        if compiling():
            return original(*a, **k)
        return inner(*a, **k)

    return wrapper


def _marker(
    tracer: Recorder, api: str, original: Callable[..., Any], summarize_args: ArgSummarizer
) -> Callable[..., Any]:
    """Record the call (``ApiCall`` + ``ApiReturn``) at entry, then run the original: the
    calls it makes are not nested under it."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if tracer.armed and tracer.recording:
            try:
                call_id = tracer.begin_call(api, summarize_args(args, kwargs), training_api=False)
                tracer.end_call(call_id, api)
            except Exception as exc:
                tracer.report_error(f"{api} wrapper", exc)
        return original(*args, **kwargs)

    return wrapper


def _arg(
    args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: object
) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _functional_args(spec: tuple[tuple[str, int, object], ...]) -> ArgSummarizer:
    def summarize_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
        first = args[0] if args else kwargs.get("input", kwargs.get("query"))
        out = [summarize("input", first)] if isinstance(first, torch.Tensor) else []
        out.extend(summarize(name, _arg(args, kwargs, i, name, d)) for name, i, d in spec)
        return tuple(out)

    return summarize_args


# -- torch.amp -----------------------------------------------------------------------------


def _wrap_grad_scaler(tracer: Recorder, patches: Patches) -> None:
    cls = getattr(torch.amp, "GradScaler", None)
    if cls is None:
        return
    for attr, api in GRAD_SCALER_APIS.items():
        original = cls.__dict__.get(attr)
        if original is None or not tracer.plan.traces(api):
            continue
        wrapper = _guarded(
            tracer, api, original, _scaler_args, _scaler_result, marker=attr == "step"
        )
        _patch(patches, cls, attr, wrapper)


def _scaler_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    scaler = args[0]
    out = [summarize("enabled", bool(getattr(scaler, "_enabled", True)))]
    if len(args) > 1:
        out.append(summarize("arg", args[1]))
    return tuple(out)


def _scaler_result(args: tuple[Any, ...], value: Any) -> ArgValue | None:
    return summarize("result", value) if isinstance(value, torch.Tensor) else None


# -- data order ----------------------------------------------------------------------------


def _wrap_data(tracer: Recorder, patches: Patches) -> None:
    data = torch.utils.data
    plan = tracer.plan
    if plan.traces(SAMPLER_SET_EPOCH):
        original = data.DistributedSampler.__dict__["set_epoch"]
        _patch(
            patches,
            data.DistributedSampler,
            "set_epoch",
            _guarded(tracer, SAMPLER_SET_EPOCH, original, _set_epoch_args, marker=True),
        )
    if plan.traces(SAMPLER_ITER):
        for cls in (
            data.RandomSampler,
            data.SequentialSampler,
            data.DistributedSampler,
            data.SubsetRandomSampler,
        ):
            original = cls.__dict__.get("__iter__")
            if original is not None:
                _patch(
                    patches,
                    cls,
                    "__iter__",
                    _guarded(tracer, SAMPLER_ITER, original, _sampler_args, marker=True),
                )
    if plan.traces(DATALOADER_NEXT):
        from torch.utils.data import dataloader

        base = dataloader._BaseDataLoaderIter
        original = base.__dict__["__next__"]
        _patch(
            patches,
            base,
            "__next__",
            _guarded(
                tracer, DATALOADER_NEXT, original, _next_args_of(_LoaderOrdinals()), _batch_result
            ),
        )


def _set_epoch_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    return (summarize("epoch", _arg(args, kwargs, 1, "epoch", None)),)


def _sampler_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    sampler = args[0]
    out = [ArgValue("sampler", "other", type(sampler).__name__)]
    shuffle = getattr(sampler, "shuffle", None)
    if isinstance(shuffle, bool):
        out.append(summarize("shuffle", shuffle))
    return tuple(out)


class _LoaderOrdinals:
    """Each dataset a process iterates gets an ordinal (``"0"``, ``"1"``...) in first-use
    order: the training loader and the validation loader of two runs of one script
    get the same ones, so the DataOrder relation can follow each loader's batches.

    Datasets are held weakly (one may hold the whole data in memory); one that cannot
    be referenced weakly is known by its id alone."""

    def __init__(self) -> None:
        self._ordinals: dict[int, tuple[weakref.ref[object] | None, str]] = {}
        self._count = 0

    def of(self, dataset: object) -> str:
        entry = self._ordinals.get(id(dataset))
        if entry is not None and (entry[0] is None or entry[0]() is dataset):
            return entry[1]
        try:
            ref: weakref.ref[object] | None = weakref.ref(dataset)
        except TypeError:
            ref = None
        ordinal = str(self._count)
        self._count += 1
        self._ordinals[id(dataset)] = (ref, ordinal)
        return ordinal


def _next_args_of(ordinals: _LoaderOrdinals) -> ArgSummarizer:
    def summarize_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
        """``loader`` (its ordinal), ``index`` (the batch's position in the epoch),
        ``sampler`` (class) and ``shuffle`` (when the sampler says)."""
        iterator = args[0]
        out = [
            ArgValue("loader", "str", ordinals.of(getattr(iterator, "_dataset", None))),
            summarize("index", getattr(iterator, "_num_yielded", None)),
        ]
        sampler = getattr(iterator, "_index_sampler", None)
        sampler = getattr(sampler, "sampler", sampler)  # inside a BatchSampler
        out.append(ArgValue("sampler", "str", type(sampler).__name__))
        shuffle = _shuffles(sampler)
        if shuffle is not None:
            out.append(summarize("shuffle", shuffle))
        return tuple(out)

    return summarize_args


def _shuffles(sampler: object) -> bool | None:
    data = torch.utils.data
    if isinstance(sampler, (data.RandomSampler, data.SubsetRandomSampler)):
        return True
    if isinstance(sampler, data.SequentialSampler):
        return False
    shuffle = getattr(sampler, "shuffle", None)
    return shuffle if isinstance(shuffle, bool) else None


def _batch_result(args: tuple[Any, ...], value: Any) -> ArgValue | None:
    """The batch's first tensor (metadata), with ``value`` its content digest (CPU only)."""
    tensor = _first_tensor(value)
    if tensor is None:
        return None
    arg = summarize("batch", tensor)
    digest = batch_digest(tensor)
    return msgspec.structs.replace(arg, value=digest) if digest is not None else arg


def _first_tensor(value: Any) -> torch.Tensor | None:
    for _ in range(4):  # (inputs, targets), {"input_ids": ...}, [[x, y]]
        if isinstance(value, torch.Tensor):
            return value
        if isinstance(value, (tuple, list)) and value:
            value = value[0]
        elif isinstance(value, dict) and value:
            value = next(iter(value.values()))
        else:
            return None
    return None


def batch_digest(tensor: torch.Tensor) -> int | None:
    """Digest of the first :data:`BATCH_DIGEST_BYTES` bytes of a CPU tensor (None elsewhere:
    reading a device tensor would cost a host sync per batch)."""
    if tensor.device.type != "cpu" or tensor.numel() == 0:
        return None
    try:
        flat = tensor.detach().reshape(-1)
        count = max(1, BATCH_DIGEST_BYTES // flat.element_size())
        return digest_in_no_grad(flat[:count].contiguous())
    except Exception:
        return None  # no readable storage (meta, sparse, wrapper subclasses): no digest


# -- parameters and checkpoints ------------------------------------------------------------


def _wrap_state(tracer: Recorder, patches: Patches) -> None:
    plan = tracer.plan
    if plan.traces(TENSOR_REQUIRES_GRAD):
        _wrap_requires_grad(tracer, patches)
    if plan.traces(TENSOR_COPY):
        _wrap_parameter_copy(tracer, patches)
    if plan.traces(MODULE_STATE_DICT):
        outermost = threading.local()  # state_dict recurses into every submodule
        original = torch.nn.Module.__dict__["state_dict"]
        _patch(
            patches,
            torch.nn.Module,
            "state_dict",
            _guarded(tracer, MODULE_STATE_DICT, original, _module_arg, outermost=outermost),
        )
    for api, attr, args in ((TORCH_SAVE, "save", _save_args), (TORCH_LOAD, "load", _load_args)):
        if plan.traces(api):
            original = getattr(torch, attr)
            wrapper = _guarded(tracer, api, original, args)
            for owner in (torch, torch.serialization):
                if getattr(owner, attr, None) is original:
                    _patch(patches, owner, attr, wrapper)


def _wrap_requires_grad(tracer: Recorder, patches: Patches) -> None:
    original = torch.Tensor.requires_grad_
    traced_call = _guarded(tracer, TENSOR_REQUIRES_GRAD, original, _requires_grad_args)
    parameter = torch.nn.Parameter

    def requires_grad_(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        # Parameters only: freezing a layer is the bug; torch itself calls this on
        # every gradient in ``zero_grad(set_to_none=False)``.
        if isinstance(tensor, parameter):
            return traced_call(tensor, *args, **kwargs)
        return original(tensor, *args, **kwargs)

    _patch(patches, torch.Tensor, "requires_grad_", requires_grad_)


def _wrap_parameter_copy(tracer: Recorder, patches: Patches) -> None:
    original = torch.Tensor.copy_
    traced_call = _guarded(tracer, TENSOR_COPY, original, _no_args)
    parameter, plain = torch.nn.Parameter, torch.Tensor

    def copy_(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        # Parameters only: overwriting one wholesale (an EMA swapped in, a checkpoint
        # loaded) is what the call is traced for; every other tensor's copy goes
        # straight through (a plain tensor after one identity check: Parameter's
        # metaclass makes isinstance slow).
        cls = type(tensor)
        if cls is parameter or (cls is not plain and isinstance(tensor, parameter)):
            return traced_call(tensor, *args, **kwargs)
        return original(tensor, *args, **kwargs)

    _patch(patches, torch.Tensor, "copy_", copy_)


def _no_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    return ()


def _requires_grad_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    return (summarize("requires_grad", bool(_arg(args, kwargs, 1, "requires_grad", True))),)


def _module_arg(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    return (ArgValue("module", "module", type(args[0]).__name__),)


def _save_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    obj = _arg(args, kwargs, 0, "obj", None)
    return (ArgValue("obj", "other", type(obj).__name__),)


def _load_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    weights_only = kwargs.get("weights_only")
    location = kwargs.get("map_location")
    return (
        summarize("weights_only", weights_only if isinstance(weights_only, bool) else None),
        summarize("map_location", str(location) if location is not None else None),
    )
