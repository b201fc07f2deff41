"""Build the ``VarStates`` event for a set of named tensors at one point of a call.

All tensors of one point share a timestamp, and their gradient states are
computed together (one device sync at most). A tensor whose contents cannot be
read (meta, sparse, exotic subclasses) gets no digest; the failure is counted by
the tracer, never raised. Of the tracer this module needs only the step, the
stage and error reporting, through the :class:`~traincheck.tracer.recorder.Recorder`
interface: the tracer calls down into it, and nothing here calls back up.

Why a cache: one training iteration looks at every parameter six times
(zero_grad, backward and step, each pre and post) and most "pre" looks see
exactly what the previous "post" saw -- the data digest taken after step ``k``
is the one wanted before step ``k+1``, the gradient state after ``zero_grad``
the one wanted before ``backward``. :class:`StateCache` remembers, per tensor,
the last digest and gradient state with torch's in-place version counter
(``Tensor._version``) and storage pointer, and a *pre* digest reuses them while
both are unchanged. *Post* digests are always computed afresh, because some
kernels write without bumping the counter (fused optimizers, BatchNorm's
running statistics): the change a traced call makes is therefore always seen.
Gradient states are reused at every point (see :meth:`StateCache.grad_states`).
What a reused pre reading can miss is a write between two traced calls that
bumps no counter -- in practice only a write through ``param.data`` in user code.

Why groups: the same few lists of tensors (an optimizer's parameters, a model's)
are read at every point of every step. A :class:`StateGroup` holds one list's
columns (names, types, shapes, dtypes, devices) built once and its last readings,
so a point where nothing changed since the group's previous point costs a few
list comparisons instead of a cache lookup and a check per tensor (measured
7.0 -> 4.7 us for six parameters, warm; in place the step's state recording went
287 -> ~255 us on the benchmark MLP). Anything changed
falls back to the per-tensor path, which also shares readings between groups
(the gradient states taken after ``backward`` are reused before ``step``).

A group's aliases column (the other paths of each shared ``Parameter``, see
:mod:`traincheck.tracer.models`) is built with the group from the registry's
alias mapping, and the group is rebuilt when that mapping is another object: a
head untied mid-run changes no name and no tensor of the optimizer's list.
"""

from __future__ import annotations

import operator
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from traincheck.events import GradState, StatePhase, VarStates
from traincheck.tracer.digest import digest_in_no_grad, grad_states_in_no_grad
from traincheck.tracer.models import NO_ALIASES
from traincheck.tracer.typenames import device_name, dtype_name

if TYPE_CHECKING:
    from traincheck.tracer.recorder import Recorder

Phase = StatePhase


class _Entry:
    """What is known about one tensor: its static description and cached readings."""

    __slots__ = (
        "data_ptr",
        "digest",
        "digest_version",
        "grad_ref",
        "grad_state",
        "grad_version",
        "ref",
        "static",
    )

    def __init__(self, tensor: torch.Tensor) -> None:
        self.ref = weakref.ref(tensor)
        self.static = _static(tensor)
        self.digest: int | None = None
        self.digest_version = -1
        self.data_ptr = -1
        self.grad_ref: weakref.ref[torch.Tensor] | None = None
        self.grad_version = -1
        self.grad_state: GradState = "none"


_call = operator.methodcaller("__call__")
"""``ref()`` for each weak reference, in C (``operator.call`` exists only from 3.11)."""


def _no_tensor() -> None:
    """Stands for the weak reference of a gradient that is None."""
    return None


class StateGroup:
    """One list of named tensors read at many points, and its last readings.

    Holds the tensors weakly (tracing must not keep a model alive); the static
    columns are shared, unchanged, by every event of the group, so nothing may
    mutate them (a change builds new lists).
    """

    __slots__ = (
        "alias_map",
        "aliases",
        "devices",
        "digest_versions",
        "digests",
        "dtypes",
        "entries",
        "grad_refs",
        "grad_states",
        "grad_versions",
        "names",
        "pointers",
        "refs",
        "shapes",
        "var_types",
    )

    def __init__(
        self,
        names: list[str],
        tensors: list[torch.Tensor],
        cache: StateCache,
        alias_map: Mapping[str, tuple[str, ...]] = NO_ALIASES,
    ) -> None:
        self.names = names
        self.alias_map = alias_map
        self.aliases = _aliases_column(names, alias_map)
        self.refs = [weakref.ref(t) for t in tensors]
        self.pointers = [t.data_ptr() for t in tensors]
        self.entries = [cache.entry(t) for t in tensors]
        statics = [entry.static for entry in self.entries]
        self.shapes = [static[0] for static in statics]
        self.var_types = [static[2] for static in statics]
        self.dtypes = [static[3] for static in statics]
        self.devices = [static[4] for static in statics]
        self.grad_refs: list[Callable[[], torch.Tensor | None]] = []
        self.grad_versions: list[int] = []
        self.grad_states: list[GradState] = []
        self.digest_versions: list[int] = []
        self.digests: list[int | None] | None = None

    def holds(
        self,
        names: list[str],
        tensors: list[torch.Tensor],
        alias_map: Mapping[str, tuple[str, ...]] = NO_ALIASES,
    ) -> bool:
        """Still this group: the same tensors under the same names, on the same storage,
        with the same aliases (the registry's mapping object is kept while they hold).

        A tensor's shape or dtype changes only with new storage (``param.data =
        ...``, a growing ``resize_``), so the storage pointers stand for them;
        a shrinking in-place ``resize_`` of a parameter is the one change missed.
        """
        return (
            [t.data_ptr() for t in tensors] == self.pointers
            and alias_map is self.alias_map
            and names == self.names
            and all(map(operator.is_, map(_call, self.refs), tensors))
        )

    def grad_states_now(self, tensors: list[torch.Tensor], cache: StateCache) -> list[GradState]:
        """The gradient states, as one reused list when no gradient changed since
        the group's previous point (same tensor objects, same versions)."""
        grads = [t.grad for t in tensors]
        versions = [-1 if g is None else g._version for g in grads]
        if versions == self.grad_versions and all(
            map(operator.is_, map(_call, self.grad_refs), grads)
        ):
            return self.grad_states
        states = cache.grad_states(tensors, self.entries)
        self.grad_refs = [_no_tensor if g is None else weakref.ref(g) for g in grads]
        self.grad_versions = versions
        self.grad_states = states
        return states

    def digests_now(
        self, tracer: Recorder, tensors: list[torch.Tensor], cache: StateCache, *, reuse: bool
    ) -> list[int | None]:
        """Data digests; at a pre point, the group's previous ones while no tensor's
        version changed (see the module docstring for why not at post). Storage
        needs no check here: :meth:`holds` compared it before this group was used,
        and new storage makes a new group."""
        versions = [t._version for t in tensors]
        if reuse and self.digests is not None and versions == self.digest_versions:
            cache.digests_reused += len(tensors)
            return self.digests
        digests = [
            cache.digest(tracer, t, e, reuse=reuse)
            for t, e in zip(tensors, self.entries, strict=True)
        ]
        self.digest_versions, self.digests = versions, digests
        return digests


class StateCache:
    """Digests and gradient states per tensor, valid while the tensor is unchanged,
    and the :class:`StateGroup` of each list of tensors read so far."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        self._groups: dict[tuple[int, ...], StateGroup] = {}
        self.digests_computed = 0
        self.digests_reused = 0

    def group(
        self,
        names: list[str],
        tensors: list[torch.Tensor],
        alias_map: Mapping[str, tuple[str, ...]] = NO_ALIASES,
    ) -> StateGroup:
        """The group of these tensors under these names (built on first sight or change)."""
        key = tuple(map(id, tensors))
        group = self._groups.get(key)
        if group is None or not group.holds(names, tensors, alias_map):
            if len(self._groups) > 256:
                self._groups.clear()
            group = self._groups[key] = StateGroup(names, tensors, self, alias_map)
        return group

    def entry(self, tensor: torch.Tensor) -> _Entry:
        entry = self._entries.get(id(tensor))
        if entry is None or entry.ref() is not tensor:
            if len(self._entries) > 4096:
                self._prune()
            entry = self._entries[id(tensor)] = _Entry(tensor)
        elif entry.static[0] != tensor.shape or entry.static[1] is not tensor.dtype:
            entry.static = _static(tensor)
        return entry

    def digest(
        self, tracer: Recorder, tensor: torch.Tensor, entry: _Entry, *, reuse: bool
    ) -> int | None:
        version, pointer = tensor._version, tensor.data_ptr()
        if reuse and entry.digest_version == version and entry.data_ptr == pointer:
            self.digests_reused += 1
            return entry.digest
        entry.digest = _digest(tracer, tensor)
        entry.digest_version, entry.data_ptr = version, pointer
        self.digests_computed += 1
        return entry.digest

    def grad_states(self, params: Sequence[torch.Tensor], entries: list[_Entry]) -> list[GradState]:
        """Gradient states, recomputed (in one batch) only where the gradient changed.

        Reused at every point, pre or post: a gradient written in place bumps its
        version (backward accumulating into it, ``zero_()``), one set anew is another
        tensor, and the one kernel family that writes without a bump (fused
        optimizers unscaling in place) cannot turn a nonzero gradient into a zero one.
        """
        states: list[GradState] = ["none"] * len(params)
        stale: list[int] = []
        for i, (param, entry) in enumerate(zip(params, entries, strict=True)):
            grad = param.grad
            if grad is None:
                continue
            ref = entry.grad_ref
            if ref is not None and ref() is grad and entry.grad_version == grad._version:
                states[i] = entry.grad_state
            else:
                stale.append(i)
        if stale:
            grads = [params[i].grad for i in stale]
            for i, grad, state in zip(stale, grads, grad_states_in_no_grad(grads), strict=True):
                entry = entries[i]
                entry.grad_ref = weakref.ref(grad)  # type: ignore[arg-type]
                entry.grad_version = grad._version  # type: ignore[union-attr]
                entry.grad_state = states[i] = state
        return states

    def _prune(self) -> None:
        self._entries = {key: e for key, e in self._entries.items() if e.ref() is not None}


def param_states(
    tracer: Recorder,
    call_id: int,
    phase: Phase,
    params: Sequence[tuple[str, torch.Tensor]],
    *,
    with_digest: bool,
    cache: StateCache | None = None,
    aliases: Mapping[str, tuple[str, ...]] = NO_ALIASES,
) -> VarStates | None:
    """The states of ``(name, tensor)`` pairs at one point, as one event (None: no pairs).

    ``aliases``: the registry's mapping of a shared parameter's name to its other paths.
    """
    if not params:
        return None
    cache = cache if cache is not None else StateCache()
    tensors = [p for _, p in params]
    group = cache.group([name for name, _ in params], tensors, aliases)
    # No ``torch.no_grad()`` here (1.3 us a point): every tensor is detached before
    # any torch op reads it (see digest.py), so nothing can record autograd history.
    grads = group.grad_states_now(tensors, cache)
    digests = None
    if with_digest:
        digests = group.digests_now(tracer, tensors, cache, reuse=phase == "pre")
    return VarStates(
        time.monotonic_ns(),
        call_id,
        phase,
        threading.get_ident(),
        tracer.meta.step,
        tracer.meta.stage,
        group.names,
        group.var_types,
        group.shapes,
        group.dtypes,
        group.devices,
        [t.requires_grad for t in tensors],
        grads,
        digests,
        group.aliases,
    )


def _aliases_column(
    names: list[str], alias_map: Mapping[str, tuple[str, ...]]
) -> list[tuple[str, ...]] | None:
    """Each name's aliases, or None when none has any (the common case: no tie)."""
    if not alias_map or not any(name in alias_map for name in names):
        return None
    return [alias_map.get(name, ()) for name in names]


def _static(tensor: torch.Tensor) -> tuple[tuple[int, ...], torch.dtype, str, str, str]:
    """Shape, dtype, var type and names: they change only when the tensor is resized or
    replaced (``requires_grad`` is not here: users flip it to freeze layers)."""
    return (
        tuple(tensor.shape),
        tensor.dtype,
        _var_type(tensor),
        dtype_name(tensor.dtype),
        device_name(tensor.device),
    )


def _var_type(param: torch.Tensor) -> str:
    # Parameter's metaclass makes isinstance slow; the exact type is the common case.
    if type(param) is torch.nn.Parameter or isinstance(param, torch.nn.Parameter):
        return "torch.nn.Parameter"
    return "torch.Tensor"


def _digest(tracer: Recorder, param: torch.Tensor) -> int | None:
    try:
        return digest_in_no_grad(param)
    except Exception as exc:
        tracer.report_error(f"digest of {type(param).__name__} on {param.device}", exc)
        return None
