"""The core training hooks on torch: optimizer step, zero_grad, backward, module call.

Where torch offers a cheap global hook we use it (optimizer step pre/post,
module/parameter registration); elsewhere we wrap the base-class function
(``Module.__call__``, ``zero_grad`` on ``Optimizer`` and ``Module``,
``Tensor.backward``, ``torch.autograd.backward``) and the DataLoader worker
loop. Global *forward* hooks are avoided on purpose: they slow every module call.
Every hook body is guarded: a failure inside the tracer is counted and reported,
and the user's call runs exactly as it would have, with its own exceptions
propagating unchanged.

These hooks run on the training thread at every step and module call. They see
the tracer only as a :class:`~traincheck.tracer.recorder.Recorder` (the object
itself, called directly: no adapter on the per-call path) and never import the
tracer's module; :mod:`~traincheck.tracer.installer` creates them for a tracer
and adds the other hook modules' patches to :attr:`TorchHooks.patches`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from traincheck.catalogue import (
    AUTOGRAD_BACKWARD,
    MODULE_CALL,
    MODULE_ZERO_GRAD,
    OPTIMIZER_STEP,
    OPTIMIZER_ZERO_GRAD,
    SUBMODULE_CALL,
    TENSOR_BACKWARD,
)
from traincheck.events import ArgValue
from traincheck.tracer import activation
from traincheck.tracer.models import ModelRegistry
from traincheck.tracer.patches import Patches
from traincheck.tracer.recorder import Recorder
from traincheck.tracer.scalars import loss_args
from traincheck.tracer.summaries import (
    module_call_args,
    module_input_arg,
    optimizer_args,
    summarize,
)

NamedParams = list[tuple[str, torch.Tensor]]

_SUBMODULE_CACHE_SIZE = 4096
"""Sub-module argument tuples kept (a model's modules, each in two modes)."""


class _CallToken:
    """What a wrapper needs to close a traced call it opened."""

    __slots__ = ("api", "call_id", "entered_backward", "params")

    def __init__(self, api: str, call_id: int, params: NamedParams | None) -> None:
        self.api = api
        self.call_id = call_id
        self.params = params
        self.entered_backward = False


class TorchHooks:
    """The hooks of one tracer on the imported torch; ``install``/``uninstall`` pair.

    ``patches`` holds every function replaced on torch, these hooks' own and
    those the installer adds for the other hook modules, so that ``uninstall``
    restores them all.
    """

    def __init__(self, tracer: Recorder) -> None:
        self.tracer = tracer
        self.registry = ModelRegistry()
        self.patches = Patches()
        self.installed = False
        self._handles: list[RemovableHandle] = []
        self._local = threading.local()
        self._call_original: Callable[..., Any] = torch.nn.Module.__call__
        self._submodule_cache: dict[
            tuple[int, bool], tuple[int, weakref.ref[torch.nn.Module], tuple[ArgValue, ...]]
        ] = {}

    # -- install / uninstall -------------------------------------------------------------

    def install(self) -> None:
        """Register the global hooks and wrap the base-class functions (idempotent)."""
        if self.installed:
            return
        self.installed = True
        plan = self.tracer.plan
        self._register_global_hooks()
        zero_grads: tuple[tuple[object, str, str], ...] = (
            (torch.optim.Optimizer, "zero_grad", OPTIMIZER_ZERO_GRAD),
            (torch.nn.Module, "zero_grad", MODULE_ZERO_GRAD),
        )
        for owner, name, api in zero_grads:
            if plan.traces(api):
                self.patches.patch(owner, name, self._wrap_zero_grad(api))
        backwards: tuple[tuple[object, str, str], ...] = (
            (torch.Tensor, "backward", TENSOR_BACKWARD),
            (torch.autograd, "backward", AUTOGRAD_BACKWARD),
        )
        for owner, name, api in backwards:
            if plan.traces(api):
                self.patches.patch(owner, name, self._wrap_backward(api))
        self._patch_worker_loop()

    def uninstall(self) -> None:
        """Remove every hook and restore every wrapped function still ours."""
        if not self.installed:
            return
        self.installed = False
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.patches.restore_all()
        from torch.utils.data._utils import worker

        if getattr(worker, "_worker_loop", None) is not activation.worker_loop:
            return
        original = getattr(worker, activation.ORIGINAL_ATTR, None)
        if original is not None:
            worker._worker_loop = original
            delattr(worker, activation.ORIGINAL_ATTR)

    def _register_global_hooks(self) -> None:
        import torch.nn.modules.module as module_mod
        import torch.optim.optimizer as optim_mod

        registrations: list[tuple[Callable[..., RemovableHandle] | None, Callable[..., Any]]] = [
            (
                getattr(module_mod, "register_module_module_registration_hook", None),
                self.registry.on_module_registered,
            ),
            (
                getattr(module_mod, "register_module_parameter_registration_hook", None),
                self.registry.on_parameter_registered,
            ),
            (optim_mod.register_optimizer_step_pre_hook, self._step_pre),
            (optim_mod.register_optimizer_step_post_hook, self._step_post),
        ]
        for register, hook in registrations:
            if register is not None:
                self._handles.append(register(hook))
        if self.tracer.plan.traces(MODULE_CALL):
            self.patches.patch(torch.nn.Module, "__call__", self._wrap_module_call())

    def _patch_worker_loop(self) -> None:
        from torch.utils.data._utils import worker

        original = worker._worker_loop
        if original is activation.worker_loop:
            return
        setattr(worker, activation.ORIGINAL_ATTR, original)
        worker._worker_loop = activation.worker_loop

    # -- optimizer step (global pre/post hooks) --------------------------------------------

    def _step_calls(self) -> list[tuple[torch.optim.Optimizer, _CallToken | None]]:
        try:
            return self._local.steps  # type: ignore[no-any-return]
        except AttributeError:
            self._local.steps = []
            return self._local.steps  # type: ignore[no-any-return]

    def _step_pre(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        tracer = self.tracer
        if not tracer.armed:
            return
        try:
            steps = self._step_calls()
            self._close_stale_step(steps, optimizer)
            if not tracer.recording or not tracer.plan.traces(OPTIMIZER_STEP):
                steps.append((optimizer, None))
                return
            call_id = tracer.begin_call(OPTIMIZER_STEP, optimizer_args(optimizer))
            token = self._token_with_state(
                OPTIMIZER_STEP, call_id, lambda: self.registry.optimizer_params(optimizer)
            )
            steps.append((optimizer, token))
        except Exception as exc:
            tracer.report_error("optimizer step pre-hook", exc)

    def _step_post(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        tracer = self.tracer
        if not tracer.armed:
            return
        try:
            steps = self._step_calls()
            if not steps or steps[-1][0] is not optimizer:
                return
            token = steps.pop()[1]
            if token is not None:
                self._record_post_state(token)
                tracer.end_call(token.call_id, OPTIMIZER_STEP)
            tracer.meta.complete_optimizer_step(self.registry.observe_optimizer(optimizer))
            tracer.flush_at_step()
        except Exception as exc:
            tracer.report_error("optimizer step post-hook", exc)

    def _close_stale_step(
        self,
        steps: list[tuple[torch.optim.Optimizer, _CallToken | None]],
        optimizer: torch.optim.Optimizer,
    ) -> None:
        """A step of this optimizer still open means the previous one raised: close it."""
        while any(opt is optimizer for opt, _ in steps):
            _, token = steps.pop()
            if token is not None:
                self.tracer.end_call(token.call_id, token.api, exception=_UnknownError())

    # -- module forward (a wrapper of Module.__call__, outermost call only) -------------------
    #
    # Not torch's global forward hooks: their mere presence sends *every* module call
    # down the slow path of ``Module._call_impl`` (measured +2.6 us per call, so a
    # few hundred per step for a transformer), while this wrapper costs a nested
    # call one thread-local read (+0.2 us) and leaves torch's fast path intact.

    def _wrap_module_call(self) -> Callable[..., Any]:
        hooks = self
        local = self._local
        original = self._call_original = torch.nn.Module.__call__
        plan = self.tracer.plan
        nested = plan.traces(SUBMODULE_CALL) and plan.module_depth != 0
        max_depth = None if plan.module_depth is None else plan.module_depth + 1
        classes = plan.module_classes
        compiling = _is_compiling

        def __call__(module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            depth = getattr(local, "depth", 0)
            if depth:
                # While dynamo compiles, touch nothing: not even the depth counter
                # (a store dynamo would have to trace).
                if not nested or compiling():
                    return original(module, *args, **kwargs)
                if (max_depth is not None and depth >= max_depth) or (
                    classes is not None and type(module).__name__ not in classes
                ):
                    local.depth = depth + 1
                    try:
                        return original(module, *args, **kwargs)
                    finally:
                        local.depth = depth
                return hooks._submodule_call(module, depth, args, kwargs)
            local.depth = 1
            try:
                token = hooks._begin_module_call(module, args)
                try:
                    output = original(module, *args, **kwargs)
                except BaseException as exc:
                    hooks._end_module_call(token, None, exc)
                    raise
                hooks._end_module_call(token, output, None)
                return output
            finally:
                local.depth = 0

        return __call__

    # -- sub-module calls (every depth below the outermost call) ---------------------------
    #
    # Through the same wrapper, not torch's global forward hooks (see above): a nested
    # call the plan does not ask for costs one thread-local read, a traced one two
    # events whose module arguments (class, qualified name, training) are built once
    # per module and mode.

    def _submodule_call(
        self, module: torch.nn.Module, depth: int, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        local = self._local
        original = self._call_original
        local.depth = depth + 1
        try:
            call_id = self._begin_submodule_call(module, args)
            try:
                output = original(module, *args, **kwargs)
            except BaseException as exc:
                self._end_submodule_call(call_id, None, exc)
                raise
            self._end_submodule_call(call_id, output, None)
            return output
        finally:
            local.depth = depth

    def _begin_submodule_call(self, module: torch.nn.Module, args: tuple[Any, ...]) -> int:
        tracer = self.tracer
        if not tracer.armed or not tracer.recording:
            return 0
        try:
            # Not a training API of its own: the outermost call already moved the stage.
            return tracer.begin_call(
                SUBMODULE_CALL,
                self._submodule_args(module) + module_input_arg(args, with_digest=False),
                training_api=False,
            )
        except Exception as exc:
            tracer.report_error("sub-module call wrapper", exc)
            return 0

    def _end_submodule_call(self, call_id: int, output: object, exc: BaseException | None) -> None:
        tracer = self.tracer
        if not call_id or not tracer.armed:
            return
        try:
            if exc is not None:
                tracer.end_call(call_id, SUBMODULE_CALL, exception=exc)
            else:
                tracer.end_call(call_id, SUBMODULE_CALL, result=summarize("output", output))
        except Exception as error:
            tracer.report_error("sub-module call wrapper", error)

    def _submodule_args(self, module: torch.nn.Module) -> tuple[ArgValue, ...]:
        """``module`` (class), ``name`` (qualified) and ``training``, cached per module and
        mode until the model structure changes (names are then recomputed)."""
        registry = self.registry
        key = (id(module), bool(module.training))
        cached = self._submodule_cache.get(key)
        if cached is not None and cached[0] == registry.generation and cached[1]() is module:
            return cached[2]
        if len(self._submodule_cache) >= _SUBMODULE_CACHE_SIZE:
            self._submodule_cache.clear()  # modules built and dropped in a loop
        name = registry.module_name(module)
        args = (
            ArgValue("module", "module", type(module).__name__),
            ArgValue("name", "str", name),
            ArgValue("training", "bool", key[1]),
        )
        self._submodule_cache[key] = (registry.generation, weakref.ref(module), args)
        return args

    def _begin_module_call(
        self, module: torch.nn.Module, args: tuple[Any, ...]
    ) -> _CallToken | None:
        tracer = self.tracer
        if not tracer.armed or not tracer.recording:
            return None
        try:
            self.registry.observe_root_call(module)
            call_args = module_call_args(module) + module_input_arg(
                args, with_digest=tracer.plan.input_digests
            )
            call_id = tracer.begin_call(MODULE_CALL, call_args)
            # The module's buffers (BatchNorm running statistics), cached per module.
            return self._token_with_state(
                MODULE_CALL, call_id, lambda: self.registry.module_buffers(module)
            )
        except Exception as exc:
            tracer.report_error("module call wrapper", exc)
            return None

    def _end_module_call(
        self,
        token: _CallToken | None,
        output: object,
        exc: BaseException | None,
    ) -> None:
        tracer = self.tracer
        if token is None or not tracer.armed:
            return
        try:
            self._record_post_state(token)
            if exc is not None:
                tracer.end_call(token.call_id, MODULE_CALL, exception=exc)
            else:
                tracer.end_call(token.call_id, MODULE_CALL, result=summarize("output", output))
        except Exception as error:
            tracer.report_error("module call wrapper", error)

    # -- zero_grad (wrappers on the base classes) ------------------------------------------

    def _wrap_zero_grad(self, api: str) -> Callable[..., Any]:
        hooks = self

        def zero_grad(obj: Any, *args: Any, **kwargs: Any) -> Any:
            token = hooks._begin_zero_grad(api, obj, args, kwargs)
            try:
                result = _original(zero_grad)(obj, *args, **kwargs)
            except BaseException as exc:
                hooks._end_call(token, exc)
                raise
            hooks._end_call(token, None)
            return result

        return zero_grad

    def _begin_zero_grad(
        self, api: str, obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> _CallToken | None:
        tracer = self.tracer
        if not tracer.armed or not tracer.recording:
            return None
        try:
            set_to_none = args[0] if args else kwargs.get("set_to_none", True)
            is_module = api == MODULE_ZERO_GRAD
            call_args = (
                ArgValue(
                    "module" if is_module else "optimizer",
                    "module" if is_module else "optimizer",
                    type(obj).__name__,
                ),
                summarize("set_to_none", set_to_none),
            )
            call_id = tracer.begin_call(api, call_args)
            return self._token_with_state(
                api,
                call_id,
                lambda: (
                    self.registry.module_params(obj)
                    if is_module
                    else self.registry.optimizer_params(obj)
                ),
            )
        except Exception as exc:
            tracer.report_error(f"{api} wrapper", exc)
            return None

    # -- backward (wrappers; VarStates on the outermost call only) -------------------------

    def _wrap_backward(self, api: str) -> Callable[..., Any]:
        hooks = self

        def backward(*args: Any, **kwargs: Any) -> Any:
            token = hooks._begin_backward(api, args)
            try:
                result = _original(backward)(*args, **kwargs)
            except BaseException as exc:
                hooks._end_call(token, exc)
                raise
            hooks._end_call(token, None)
            return result

        return backward

    def _begin_backward(self, api: str, args: tuple[Any, ...]) -> _CallToken | None:
        tracer = self.tracer
        if not tracer.armed or not tracer.recording:
            return None
        outermost = tracer.enter_backward()
        try:
            call_id = tracer.begin_call(api, loss_args(args) if api == TENSOR_BACKWARD else ())
            if outermost:
                token = self._token_with_state(api, call_id, self.registry.tracked_params)
            else:
                token = _CallToken(api, call_id, None)
            token.entered_backward = True
            return token
        except Exception as exc:
            tracer.exit_backward()
            tracer.report_error(f"{api} wrapper", exc)
            return None

    # -- shared ------------------------------------------------------------------------------

    def _token_with_state(
        self, api: str, call_id: int, params_of: Callable[[], NamedParams]
    ) -> _CallToken:
        """The call's token, after recording its pre state if the plan asks; it keeps
        the parameters only when a post state is to be recorded too."""
        plan = self.tracer.plan
        pre, pre_digest = plan.state_at(api, "pre")
        post = plan.state_at(api, "post")[0]
        params = params_of() if pre or post else None
        if pre and params:
            self.tracer.record_params(
                call_id, "pre", params, with_digest=pre_digest, aliases=self.registry.aliases()
            )
        return _CallToken(api, call_id, params if post and params else None)

    def _record_post_state(self, token: _CallToken) -> None:
        """The post state of a call whose token kept its parameters (see above)."""
        if token.params is not None:
            with_digest = self.tracer.plan.state_at(token.api, "post")[1]
            self.tracer.record_params(
                token.call_id,
                "post",
                token.params,
                with_digest=with_digest,
                aliases=self.registry.aliases(),
            )

    def _end_call(self, token: _CallToken | None, exc: BaseException | None) -> None:
        """Close a wrapper's call: post VarStates (if any), ApiReturn, backward depth."""
        if token is None:
            return
        tracer = self.tracer
        try:
            if tracer.armed:
                self._record_post_state(token)
            if tracer.armed:
                tracer.end_call(token.call_id, token.api, exception=exc)
        except Exception as error:
            tracer.report_error(f"{token.api} wrapper", error)
        finally:
            if token.entered_backward:
                tracer.exit_backward()


class _UnknownError(Exception):
    """Stands for the exception of a step whose post-hook never ran."""


def _original(wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """The function a wrapper wraps (set by ``functools.update_wrapper``)."""
    return wrapper.__wrapped__  # type: ignore[attr-defined,no-any-return]


def _is_compiling() -> bool:
    """Whether dynamo is tracing: a traced sub-module call would then put our hooks into
    the compiled graph (or break it), so compiled code's sub-modules are not traced.
    Dynamo folds this test to a constant while tracing."""
    return torch.compiler.is_compiling()
