"""Targeted wrappers for the training APIs torch offers no global hook for.

Each wrapped API is called a handful of times per epoch or step, so a plain
Python wrapper (``ApiCall`` before, ``ApiReturn`` after, small typed summaries of
the arguments and the result) is the cheapest hook that sees it:

- ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` (ordering against
  backward and step is what clipping bugs break);
- ``torch.optim.lr_scheduler.LRScheduler.step``, one canonical name for every
  scheduler class (the class is the ``scheduler`` argument, the new lr the result);
- ``torch.utils.data.DataLoader.__iter__``, once per epoch (batches are not
  traced); it also counts the ``epoch`` meta-variable;
- ``torch.nn.Module.train`` / ``eval`` / ``to`` / ``load_state_dict`` (outermost
  call only: ``eval`` calls ``train`` on every submodule);
- ``torch.distributed`` collectives (they run only once a process group exists);
- ``torch.autocast``: the ``autocast`` meta-variable (the fast dtype while a
  context is active, None otherwise), sent as ``MetaChange``; and, when the plan
  asks, ``torch.autocast.__enter__`` / ``__exit__`` marker calls (``device_type``,
  ``dtype``, ``enabled``) for the ordering relations.

The plan (``TracingPlan.apis``) decides which are installed at all. Every
wrapper calls the original exactly once with the user's arguments, and lets its
result and exceptions through unchanged (:func:`~traincheck.tracer.api_wrapper.traced`).

A hook module like :mod:`~traincheck.tracer.hooks`: it sees the tracer only as a
:class:`~traincheck.tracer.recorder.Recorder`, records its replacements in the
shared :class:`~traincheck.tracer.patches.Patches`, and is installed by
:mod:`~traincheck.tracer.installer`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch

from traincheck.catalogue import (
    AUTOCAST_ENTER,
    AUTOCAST_EXIT,
    CLIP_GRAD_NORM,
    CLIP_GRAD_VALUE,
    COLLECTIVES,
    DATALOADER_ITER,
    MODULE_EVAL,
    MODULE_LOAD_STATE_DICT,
    MODULE_TO,
    MODULE_TRAIN,
    SCHEDULER_STEP,
)
from traincheck.events import ArgValue
from traincheck.tracer import state
from traincheck.tracer.api_wrapper import ArgSummarizer, ResultSummarizer, traced
from traincheck.tracer.patches import Patches
from traincheck.tracer.recorder import Recorder
from traincheck.tracer.scalars import with_scalar
from traincheck.tracer.summaries import summarize

AUTOCAST_META = "autocast"


def install(tracer: Recorder, patches: Patches) -> None:
    """Wrap every API of this module the plan asks for, recording each patch in ``patches``."""
    plan = tracer.plan
    wrap = _Wrapping(tracer, patches)
    for api, attr in ((CLIP_GRAD_NORM, "clip_grad_norm_"), (CLIP_GRAD_VALUE, "clip_grad_value_")):
        if plan.traces(api):
            wrap.functions(
                (torch.nn.utils, torch.nn.utils.clip_grad), attr, api, _clip_args, _tensor_result
            )
    if plan.traces(SCHEDULER_STEP):
        _wrap_schedulers(wrap)
    if plan.traces(DATALOADER_ITER):
        wrap.method(
            torch.utils.data.DataLoader, "__iter__", DATALOADER_ITER, _loader_args, before=_epoch
        )
    module_calls = threading.local()
    for api, attr, args in (
        (MODULE_TRAIN, "train", _train_args),
        (MODULE_EVAL, "eval", _module_args),
        (MODULE_TO, "to", _to_args),
        (MODULE_LOAD_STATE_DICT, "load_state_dict", _load_state_dict_args),
    ):
        if plan.traces(api):
            wrap.method(torch.nn.Module, attr, api, args, outermost=module_calls)
    _wrap_collectives(wrap)
    _wrap_process_group(wrap)
    _wrap_autocast(tracer, patches)


class _Wrapping:
    """Builds the wrappers of one tracer and records them in its patches (for uninstall)."""

    def __init__(self, tracer: Recorder, patches: Patches) -> None:
        self.tracer = tracer
        self.patches = patches

    def functions(
        self,
        owners: Sequence[object],
        attr: str,
        api: str,
        args: ArgSummarizer,
        result: ResultSummarizer | None = None,
    ) -> None:
        """Wrap a function everywhere it is published (``torch.nn.utils`` and its module)."""
        wrappers: dict[int, Callable[..., Any]] = {}
        for owner in owners:
            original = getattr(owner, attr, None)
            if original is None:
                continue
            wrapper = wrappers.get(id(original))
            if wrapper is None:
                wrapper = wrappers[id(original)] = traced(self.tracer, api, original, args, result)
            self.patches.patch(owner, attr, wrapper)

    def method(
        self,
        owner: type,
        attr: str,
        api: str,
        args: ArgSummarizer,
        result: ResultSummarizer | None = None,
        *,
        outermost: threading.local | None = None,
        before: Callable[[Recorder, tuple[Any, ...]], None] | None = None,
    ) -> None:
        original = owner.__dict__.get(attr)
        if original is None:
            return
        wrapper = traced(
            self.tracer, api, original, args, result, outermost=outermost, before=before
        )
        self.patches.patch(owner, attr, wrapper)


# -- argument summaries ------------------------------------------------------------------


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _clip_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    first = "clip_value" if "clip_value" in kwargs else "max_norm"
    out = [summarize(first, _arg(args, kwargs, 1, first))]
    if first == "max_norm":
        out.append(summarize("norm_type", _arg(args, kwargs, 2, "norm_type") or 2.0))
    return tuple(out)


def _tensor_result(args: tuple[Any, ...], value: Any) -> ArgValue | None:
    """The returned total norm, with its value when it is on the CPU (see ``scalars``)."""
    return with_scalar(summarize("result", value), value)


def _module_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    return (ArgValue("module", "module", type(args[0]).__name__),)


def _train_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    mode = _arg(args, kwargs, 1, "mode")
    return (*_module_args(args, kwargs), summarize("mode", True if mode is None else mode))


def _to_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    out = list(_module_args(args, kwargs))
    out.extend(summarize(f"arg{i}", value) for i, value in enumerate(args[1:3]))
    out.extend(summarize(k, kwargs[k]) for k in ("device", "dtype") if k in kwargs)
    return tuple(out)


def _load_state_dict_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    strict = _arg(args, kwargs, 2, "strict")
    return (*_module_args(args, kwargs), summarize("strict", True if strict is None else strict))


def _loader_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    loader = args[0]
    return (
        ArgValue("dataset", "other", type(loader.dataset).__name__),
        summarize("batch_size", loader.batch_size),
        summarize("num_workers", loader.num_workers),
        summarize("drop_last", loader.drop_last),
        ArgValue("sampler", "other", type(loader.sampler).__name__),
    )


# -- epoch ------------------------------------------------------------------------------


def _epoch(tracer: Recorder, args: tuple[Any, ...]) -> None:
    """``epoch`` = completed passes over the first DataLoader the process iterates.

    Later loaders (validation, test) do not count. Once the user sets ``epoch``
    with ``traincheck.annotate``, counting stops: the user knows better. The count
    is process state (:data:`traincheck.tracer.state.epochs`): a forked child
    starts its own.
    """
    epochs = state.epochs
    loader = args[0]
    if epochs.loader_id is None:
        epochs.loader_id = id(loader)
    if id(loader) != epochs.loader_id:
        return
    current = tracer.meta.annotations.get("epoch")
    if epochs.count >= 0 and current != epochs.count:
        return
    epochs.count += 1
    tracer.meta.set_annotation("epoch", epochs.count)


# -- schedulers, collectives, autocast ---------------------------------------------------


def _wrap_schedulers(wrap: _Wrapping) -> None:
    """One canonical API for every scheduler class that defines its own ``step``."""
    schedulers = torch.optim.lr_scheduler
    base = getattr(schedulers, "LRScheduler", None) or schedulers._LRScheduler
    outermost = threading.local()
    for cls in {base, *(c for c in vars(schedulers).values() if _is_scheduler(c, base))}:
        if "step" in cls.__dict__:
            wrap.method(
                cls, "step", SCHEDULER_STEP, _scheduler_args, _scheduler_result, outermost=outermost
            )


def _is_scheduler(candidate: object, base: type) -> bool:
    return isinstance(candidate, type) and (
        issubclass(candidate, base) or candidate.__name__ == "ReduceLROnPlateau"
    )


def _scheduler_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    return (ArgValue("scheduler", "scheduler", type(args[0]).__name__),)


def _scheduler_result(args: tuple[Any, ...], value: Any) -> ArgValue | None:
    """The learning rate of the first param group after the step."""
    optimizer = getattr(args[0], "optimizer", None)
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return None
    lr = groups[0].get("lr")
    return summarize("lr", lr) if isinstance(lr, (int, float)) else None


def _wrap_collectives(wrap: _Wrapping) -> None:
    import torch.distributed as dist

    if not dist.is_available():
        return
    from torch.distributed import distributed_c10d

    for name in COLLECTIVES:
        api = f"torch.distributed.{name}"
        if wrap.tracer.plan.traces(api):
            wrap.functions((dist, distributed_c10d), name, api, _collective_args)


def _wrap_process_group(wrap: _Wrapping) -> None:
    """Learn the process's rank when it joins the default process group, whatever
    launched it (torchrun, ``mp.spawn`` with an explicit ``rank=``, a shell loop)."""
    import torch.distributed as dist

    if not dist.is_available():
        return
    from torch.distributed import distributed_c10d

    original = distributed_c10d.init_process_group
    tracer = wrap.tracer

    @functools.wraps(original)
    def init_process_group(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        try:
            tracer.learn_rank(dist.get_rank(), dist.get_world_size())
        except Exception as exc:  # fail open: the job's group is up, tracing goes on
            tracer.report_error("init_process_group", exc)
        return result

    for owner in (dist, distributed_c10d):
        if getattr(owner, "init_process_group", None) is original:
            wrap.patches.patch(owner, "init_process_group", init_process_group)


def _collective_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    out = []
    first = args[0] if args else kwargs.get("tensor")
    if first is not None:
        out.append(summarize("tensor", first))
    op = kwargs.get("op")
    if op is None and len(args) > 1 and not isinstance(args[1], (torch.Tensor, int, list)):
        op = args[1]
    if op is not None:
        out.append(ArgValue("op", "str", str(op)))
    out.append(summarize("async_op", bool(kwargs.get("async_op", False))))
    return tuple(out)


def _wrap_autocast(tracer: Recorder, patches: Patches) -> None:
    """``autocast`` meta-variable: set on entering a context, restored on leaving it."""
    cls = torch.amp.autocast_mode.autocast
    local = threading.local()
    events = _autocast_events(tracer)
    enter, exit_ = cls.__dict__["__enter__"], cls.__dict__["__exit__"]

    def __enter__(self: Any) -> Any:
        value = enter(self)
        try:
            if tracer.armed:
                dtype = str(self.fast_dtype) if getattr(self, "_enabled", True) else None
                stack = local.__dict__.setdefault("stack", [])
                stack.append(tracer.meta.annotations.get(AUTOCAST_META))
                tracer.meta.set_annotation(AUTOCAST_META, dtype)
                if events is not None:
                    events[0](self)
        except Exception as exc:
            tracer.report_error("autocast enter", exc)
        return value

    def __exit__(self: Any, *exc_info: Any) -> Any:
        value = exit_(self, *exc_info)
        try:
            stack = local.__dict__.get("stack")
            if tracer.armed and stack:
                tracer.meta.set_annotation(AUTOCAST_META, stack.pop())
                if events is not None:
                    events[1](self)
        except Exception as exc:
            tracer.report_error("autocast exit", exc)
        return value

    patches.patch(cls, "__enter__", __enter__)
    patches.patch(cls, "__exit__", __exit__)


def _autocast_events(
    tracer: Recorder,
) -> tuple[Callable[[Any], None], Callable[[Any], None]] | None:
    """Recorders of autocast entry and exit as marker calls (opened and closed at once:
    the context's body is not nested in them); None when the plan wants neither."""
    enter = tracer.plan.traces(AUTOCAST_ENTER)
    exit_ = tracer.plan.traces(AUTOCAST_EXIT)
    if not enter and not exit_:
        return None

    def record(api: str, wanted: bool) -> Callable[[Any], None]:
        def on(context: Any) -> None:
            if wanted and tracer.armed and tracer.recording and not torch.compiler.is_compiling():
                call_id = tracer.begin_call(api, _autocast_args(context), training_api=False)
                tracer.end_call(call_id, api)

        return on

    return record(AUTOCAST_ENTER, enter), record(AUTOCAST_EXIT, exit_)


def _autocast_args(context: Any) -> tuple[ArgValue, ...]:
    return (
        summarize("device_type", getattr(context, "device", None)),
        summarize("dtype", str(getattr(context, "fast_dtype", None))),
        summarize("enabled", bool(getattr(context, "_enabled", True))),
    )
