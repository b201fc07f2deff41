"""Find the user's models and name their parameters, without any user input.

torch's global registration hooks report every submodule and parameter
assignment while models are built; from them we keep a weak parent map. A root
is a module no live module holds; its parameters are named
``<RootClass>.<dotted.path>`` (``Net.fc1.weight``), and the second live root of
a class is ``Net[1]``, in creation order, so two runs of the same script name
parameters identically. Models built before the hooks were installed are found
at their first forward call instead. Parameters no module owns are named after
the optimizer holding them: ``optimizer[i].param[j]``.

A ``torch.compile``'d model is named after the model it compiles
(``Net.fc1.weight``, not ``OptimizedModule._orig_mod.fc1.weight``): the same
script run with and without compile then names the same parameters the same, so
invariants inferred from one check the other.

A ``Parameter`` registered under several paths (a tied output layer:
``head.weight = embed.weight``, Hugging Face's ``tie_weights``) is named after
its first path in ``named_parameters()`` order (``Net.embed.weight``); its other
paths are its *aliases* (``Net.head.weight``), read with
``named_parameters(remove_duplicate=False)`` in the same pass and recorded with
its states, so the tie shows in the trace although the parameter is one variable.

Everything is held weakly: tracing must not keep a model (or its GPU memory)
alive. Names are recomputed lazily, only after the model structure changed.
"""

from __future__ import annotations

import itertools
import operator
import weakref
from collections import Counter
from collections.abc import Iterable, Mapping

import torch

NO_ALIASES: Mapping[str, tuple[str, ...]] = {}
"""The aliases of a model that ties nothing (shared: nothing may mutate it)."""


class ModelRegistry:
    """Weak map of modules seen so far, and the parameter names derived from it."""

    def __init__(self) -> None:
        self._order = itertools.count()
        self._seen: dict[int, tuple[int, weakref.ref[torch.nn.Module]]] = {}
        self._parent: dict[int, tuple[weakref.ref[torch.nn.Module], str]] = {}
        self._optimizers: list[weakref.ref[torch.optim.Optimizer]] = []
        self._optimizer_index: dict[int, int] = {}
        self._names: dict[int, tuple[weakref.ref[torch.Tensor], str]] = {}
        self._tracked: list[tuple[str, weakref.ref[torch.Tensor]]] = []
        self._root_prefix: dict[int, str] = {}
        self._buffers: dict[int, list[tuple[str, torch.Tensor]]] = {}
        self._named_by_optimizer: weakref.WeakKeyDictionary[
            torch.optim.Optimizer, tuple[list[torch.Tensor], list[tuple[str, torch.Tensor]]]
        ] = weakref.WeakKeyDictionary()
        self._module_names: dict[int, tuple[weakref.ref[torch.nn.Module], str]] = {}
        self._aliases: Mapping[str, tuple[str, ...]] = NO_ALIASES
        self.generation = 0
        """Bumped at every rebuild: caches keyed on names (the hooks' per-module call
        arguments) compare it instead of being told."""
        self._dirty = True

    # -- fed by torch's global hooks -------------------------------------------------

    def on_module_registered(
        self, parent: torch.nn.Module, name: str, child: torch.nn.Module | None
    ) -> None:
        """``register_module_module_registration_hook`` callback (returns nothing)."""
        self._note(parent)
        if child is not None:
            self._note(child)
            if self._valid_parent(id(child), child) is None:
                self._parent[id(child)] = (weakref.ref(parent), name)
        self._dirty = True

    def on_parameter_registered(
        self, module: torch.nn.Module, name: str, param: torch.Tensor | None
    ) -> None:
        """``register_module_parameter_registration_hook`` callback (returns nothing)."""
        self._note(module)
        self._dirty = True

    def observe_root_call(self, module: torch.nn.Module) -> None:
        """Note a module called from outside any module (finds pre-existing models)."""
        entry = self._seen.get(id(module))
        if entry is None or entry[1]() is not module:
            self._note(module)
            self._dirty = True

    def observe_optimizer(self, optimizer: torch.optim.Optimizer) -> int:
        """Index of an optimizer in first-seen order (assigned on first sight)."""
        key = id(optimizer)
        index = self._optimizer_index.get(key)
        if index is not None and self._optimizers[index]() is optimizer:
            return index
        index = len(self._optimizers)
        self._optimizers.append(weakref.ref(optimizer))
        self._optimizer_index[key] = index
        self._dirty = True
        return index

    # -- queries used by the hooks ---------------------------------------------------

    def name_of(self, param: torch.Tensor) -> str | None:
        """The parameter's name, or None if no known model or optimizer holds it."""
        if self._dirty:
            self._rebuild()
        entry = self._names.get(id(param))
        if entry is not None and entry[0]() is param:
            return entry[1]
        return None

    def optimizer_params(self, optimizer: torch.optim.Optimizer) -> list[tuple[str, torch.Tensor]]:
        """Every parameter of the optimizer's groups, named, in group order.

        The same list is returned while the names and the optimizer's parameters
        are unchanged (it is asked for at four points of every step).
        """
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if self._dirty:
            self._rebuild()
        cached = self._named_by_optimizer.get(optimizer)
        if (
            cached is not None
            and len(cached[0]) == len(params)
            and all(map(operator.is_, cached[0], params))
        ):
            return cached[1]
        index = self.observe_optimizer(optimizer)
        named = []
        for j, param in enumerate(params):
            name = self.name_of(param)
            if name is None:
                name = f"optimizer[{index}].param[{j}]"
                self._names[id(param)] = (weakref.ref(param), name)
                self._dirty = True
            named.append((name, param))
        if not self._dirty:
            self._named_by_optimizer[optimizer] = (params, named)
        return named

    def module_params(self, module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
        """The module's parameters under their global names (local path as fallback)."""
        prefix = type(module).__name__
        return [
            (self.name_of(param) or f"{prefix}.{path}", param)
            for path, param in module.named_parameters()
        ]

    def module_buffers(self, module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
        """The module's buffers (e.g. BatchNorm running stats), named like its parameters.

        Cached until the model structure changes: most models have none, and
        asking costs one dict lookup per forward call then.
        """
        if self._dirty:
            self._rebuild()
        cached = self._buffers.get(id(module))
        if cached is None:
            model = unwrap_compiled(module)
            prefix = self._root_prefix.get(id(model), type(model).__name__)
            cached = [(f"{prefix}.{path}", buf) for path, buf in model.named_buffers()]
            self._buffers[id(module)] = cached
        return cached

    def module_name(self, module: torch.nn.Module) -> str:
        """The module's qualified name in the user's model (``MLP.block1.attn``).

        Wrapper levels (DDP's ``module``, compile's ``_orig_mod``) are left out, so
        the same layer has the same name with and without them. A module no known
        model holds (built and called on its own) is named by its class.
        """
        if self._dirty:
            self._rebuild()
        entry = self._module_names.get(id(module))
        if entry is not None and entry[0]() is module:
            return entry[1]
        return type(module).__name__

    def aliases(self) -> Mapping[str, tuple[str, ...]]:
        """Parameter name -> the other paths its ``Parameter`` is registered under.

        The same mapping object is returned until the aliases change (a rebuild that
        finds the same ties keeps it), so a reader may cache what it derived from
        it and compare by identity; a model that ties nothing has ``NO_ALIASES``.
        """
        if self._dirty:
            self._rebuild()
        return self._aliases

    def tracked_params(self) -> list[tuple[str, torch.Tensor]]:
        """All live parameters of known models and optimizers, named."""
        if self._dirty:
            self._rebuild()
        out = []
        for name, ref in self._tracked:
            param = ref()
            if param is not None:
                out.append((name, param))
        return out

    # -- internals ---------------------------------------------------------------------

    def _note(self, module: torch.nn.Module) -> None:
        entry = self._seen.get(id(module))
        if entry is None or entry[1]() is not module:
            self._seen[id(module)] = (next(self._order), weakref.ref(module))
            self._parent.pop(id(module), None)

    def _valid_parent(self, key: int, child: torch.nn.Module) -> torch.nn.Module | None:
        entry = self._parent.get(key)
        if entry is None:
            return None
        parent = entry[0]()
        if parent is None or parent._modules.get(entry[1]) is not child:
            return None
        return parent

    def _live_roots(self) -> list[torch.nn.Module]:
        """Parameter-holding modules no live module holds, in creation order."""
        live: list[tuple[int, torch.nn.Module]] = []
        for key, (order, ref) in list(self._seen.items()):
            module = ref()
            if module is None:
                del self._seen[key]
                self._parent.pop(key, None)
                continue
            if self._valid_parent(key, module) is None and _has_params(module):
                live.append((order, module))
        live.sort(key=lambda item: item[0])
        roots = [module for _, module in live]
        # A root found at its first call may be a submodule of a model built
        # before our hooks existed; the outer model wins.
        inner = {id(sub) for root in roots for sub in itertools.islice(root.modules(), 1, None)}
        return [root for root in roots if id(root) not in inner]

    def _rebuild(self) -> None:
        names: dict[int, tuple[weakref.ref[torch.Tensor], str]] = {}
        tracked: list[tuple[str, weakref.ref[torch.Tensor]]] = []
        aliases: dict[str, list[str]] = {}
        per_class: Counter[str] = Counter()
        self._root_prefix = {}
        self._buffers = {}
        self._named_by_optimizer.clear()
        for root in self._live_roots():
            model = unwrap_compiled(root)
            cls = type(model).__name__
            prefix = cls if per_class[cls] == 0 else f"{cls}[{per_class[cls]}]"
            per_class[cls] += 1
            self._root_prefix[id(root)] = self._root_prefix[id(model)] = prefix
            for path, param in model.named_parameters(remove_duplicate=False):
                entry = names.get(id(param))
                if entry is not None:  # registered again: a tie
                    aliases.setdefault(entry[1], []).append(f"{prefix}.{path}")
                    continue
                ref: weakref.ref[torch.Tensor] = weakref.ref(param)
                names[id(param)] = (ref, f"{prefix}.{path}")
                tracked.append((f"{prefix}.{path}", ref))
        self._set_aliases({name: tuple(paths) for name, paths in aliases.items()})
        self._names = names
        self._tracked = tracked
        self._module_names = self._name_modules()
        self.generation += 1
        self._dirty = False
        for index, opt_ref in enumerate(self._optimizers):
            optimizer = opt_ref()
            if optimizer is None:
                continue
            for j, tensor in enumerate(_flat_params(optimizer)):
                if id(tensor) not in names:
                    ref = weakref.ref(tensor)
                    name = f"optimizer[{index}].param[{j}]"
                    names[id(tensor)] = (ref, name)
                    tracked.append((name, ref))

    def _set_aliases(self, aliases: dict[str, tuple[str, ...]]) -> None:
        if aliases != self._aliases:
            self._aliases = aliases or NO_ALIASES

    def _name_modules(self) -> dict[int, tuple[weakref.ref[torch.nn.Module], str]]:
        names: dict[int, tuple[weakref.ref[torch.nn.Module], str]] = {}
        for root in self._live_roots():
            model = unwrap_model(root)
            prefix = self._root_prefix.get(id(root), type(model).__name__)
            if model is not unwrap_compiled(root):  # a DDP/FSDP wrapper: the user's class
                prefix = type(model).__name__
            for path, sub in model.named_modules(remove_duplicate=True):
                clean = ".".join(p for p in path.split(".") if p and p != "_orig_mod")
                names.setdefault(
                    id(sub), (weakref.ref(sub), f"{prefix}.{clean}" if clean else prefix)
                )
        return names


WRAPPER_CLASSES = frozenset({"DistributedDataParallel", "DataParallel", "FullyShardedDataParallel"})
"""Wrappers whose ``module`` child is the user's model: left out of qualified names."""


def unwrap_model(module: torch.nn.Module) -> torch.nn.Module:
    """The user's model inside compile and data-parallel wrappers, else itself."""
    for _ in range(8):
        module = unwrap_compiled(module)
        inner = module._modules.get("module")
        if type(module).__name__ not in WRAPPER_CLASSES or inner is None:
            return module
        module = inner
    return module


def unwrap_compiled(module: torch.nn.Module) -> torch.nn.Module:
    """The model a ``torch.compile`` wrapper (``OptimizedModule``) compiles, else itself.

    Recognised by the wrapper's ``_orig_mod`` submodule rather than its class, so
    nothing imports ``torch._dynamo`` just to ask; read from ``_modules`` (one dict
    lookup) because ``getattr`` of a missing name on a module raises inside
    ``Module.__getattr__``, and this runs at every outermost module call.
    """
    for _ in range(8):  # compile of a compiled model nests wrappers
        inner = module._modules.get("_orig_mod")
        if inner is None:
            return module
        module = inner
    return module


def _has_params(module: torch.nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _flat_params(optimizer: torch.optim.Optimizer) -> Iterable[torch.Tensor]:
    return (p for group in optimizer.param_groups for p in group["params"])
