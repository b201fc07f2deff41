"""The event schema: the one definition shared by the tracer and the sidecar.

Every record that crosses the process boundary is one of the frozen, tagged
structs below, grouped into a :class:`Batch`. They are encoded as msgpack arrays
(``array_like``) so field names are not repeated on the wire or on disk, and the
sidecar decodes them with a typed decoder: a peer that sends anything else is
rejected, never evaluated or unpickled.

This module must stay importable without torch (the sidecar and the offline
tools never import torch); ``tests/unit/test_architecture.py`` checks that.

Fields that identify the producing process (pid, rank) live on the batch, not on
every event: all events of a batch come from one process.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import msgspec

SCHEMA_VERSION = 2
"""Version 2 added :class:`VarStates`; a version-1 batch is a valid version-2 batch.
Fields added since at the end of a struct with a default (``aliases``) need no new
version: a reader of array-encoded structs fills a missing trailing field with its
default and ignores one it does not know."""

SUPPORTED_SCHEMA_VERSIONS = frozenset({1, 2})
"""What readers accept: traces recorded by an older tracer stay readable."""

UNKNOWN_RANK = -1
"""The rank of a batch sent before its process knew its rank: no ``RANK`` in the
environment and no process group joined yet (an ``mp.spawn`` worker before its
``init_process_group``). Never a guessed 0: the tracer sends the learned rank from
the moment the process joins a group, or rank 0 once it starts training without one
(a single process); only set-up events, which no invariant judges, can carry it."""

Stage = Literal["init", "train", "eval", "test"]
"""Training phase of an event: ``init`` before the first forward pass with grad
enabled, ``eval`` while grad is disabled or inference mode is on, else ``train``.
``test`` is never detected (a final test pass makes the same calls as a
validation pass); it is there for ``traincheck.annotate(stage="test")``."""

GradState = Literal["none", "zero", "nonzero"]
"""What ``Parameter.grad`` holds: no tensor, an all-zero tensor, or anything else."""

Scalar = bool | int | float | str | None


class ArgValue(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """A small typed summary of one argument or return value.

    ``kind`` names what the value is (``int``, ``float``, ``bool``, ``str``,
    ``none``, ``tensor``, ``module``, ``optimizer``, ``seq``, ``other``); scalars
    keep their value, tensors keep metadata only (content goes in digests).
    """

    name: str
    kind: str
    value: Scalar = None
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    device: str | None = None
    requires_grad: bool | None = None


class RunStart(msgspec.Struct, frozen=True, array_like=True, tag="run_start"):
    """First event a traced process sends: who it is and what it runs."""

    ts_ns: int
    wall_ns: int
    pid: int
    ppid: int
    rank: int
    local_rank: int
    world_size: int
    host: str
    argv: list[str]
    python: str
    torch_version: str


class RunEnd(msgspec.Struct, frozen=True, array_like=True, tag="run_end"):
    """Last event a traced process sends, at interpreter exit, with its counters."""

    ts_ns: int
    events_sent: int
    events_dropped: int
    batches_dropped: int
    reason: str


class ApiCall(msgspec.Struct, frozen=True, array_like=True, tag="call"):
    """Entry into a traced API. ``parent_id`` is the enclosing traced call (0: none)."""

    ts_ns: int
    call_id: int
    parent_id: int
    thread: int
    api: str
    step: int
    stage: Stage
    args: tuple[ArgValue, ...] = ()
    source: str | None = None


class ApiReturn(msgspec.Struct, frozen=True, array_like=True, tag="ret"):
    """Exit from a traced API, normal or by exception (``exception`` is its type name)."""

    ts_ns: int
    call_id: int
    thread: int
    api: str
    step: int
    stage: Stage
    result: ArgValue | None = None
    exception: str | None = None


StatePhase = Literal["pre", "post", "init"]
"""Where a variable state was read: before or after a call, or when first seen."""


class VarState(msgspec.Struct, frozen=True, array_like=True, tag="var"):
    """The state of one tracked variable (a parameter) at a well-defined point.

    ``call_id``/``phase`` say where it was taken: before (``pre``) or after
    (``post``) the traced call ``call_id``, or at discovery (``init``, call_id 0).
    ``digest`` covers every element of the tensor (see ``traincheck.tracer.digest``);
    it is None where the point needs only the gradient state (e.g. ``zero_grad``).
    ``aliases`` are the other paths under which the same ``Parameter`` object is
    registered (a tied output layer, ``Net.head.weight`` beside ``Net.embed.weight``):
    ``named_parameters()`` lists a shared parameter once, under ``var_name``, and
    without this field a tie would be invisible in the trace.
    """

    ts_ns: int
    call_id: int
    phase: StatePhase
    thread: int
    step: int
    stage: Stage
    var_name: str
    var_type: str
    shape: tuple[int, ...]
    dtype: str
    device: str
    requires_grad: bool
    grad: GradState
    digest: int | None = None
    grad_digest: int | None = None
    aliases: tuple[str, ...] = ()


class VarStates(msgspec.Struct, frozen=True, array_like=True, tag="vars"):
    """The states of several variables at one point: :class:`VarState` as columns.

    What the tracer sends: one event per point instead of one per parameter, so
    the training process builds, queues and encodes a few objects per step rather
    than dozens (every one of which costs it time between torch kernels). Readers
    see :class:`VarState` events: :func:`single_events` expands these where a
    trace or a live stream is read, so no consumer handles the columns.
    ``digests`` is None at points that take none (e.g. ``zero_grad``);
    ``aliases`` is None when no variable of the point has any (a model that ties
    nothing pays one byte per event for it).
    """

    ts_ns: int
    call_id: int
    phase: StatePhase
    thread: int
    step: int
    stage: Stage
    var_names: list[str]
    var_types: list[str]
    shapes: list[tuple[int, ...]]
    dtypes: list[str]
    devices: list[str]
    requires_grad: list[bool]
    grads: list[GradState]
    digests: list[int | None] | None = None
    aliases: list[tuple[str, ...]] | None = None

    def expand(self) -> list[VarState]:
        """One :class:`VarState` per variable, in order (columns of unequal length
        are cut to the shortest: a malformed event never raises here)."""
        count = len(self.var_names)
        digests = self.digests if self.digests is not None else [None] * count
        aliases = self.aliases if self.aliases is not None else [()] * count
        head = (self.ts_ns, self.call_id, self.phase, self.thread, self.step, self.stage)
        return [
            VarState(*head, name, kind, shape, dtype, device, trains, grad, digest, None, shared)
            for name, kind, shape, dtype, device, trains, grad, digest, shared in zip(
                self.var_names,
                self.var_types,
                self.shapes,
                self.dtypes,
                self.devices,
                self.requires_grad,
                self.grads,
                digests,
                aliases,
                strict=False,
            )
        ]


class MetaChange(msgspec.Struct, frozen=True, array_like=True, tag="meta"):
    """A meta-variable took a new value (step, stage, epoch or a user annotation)."""

    ts_ns: int
    thread: int
    key: str
    value: Scalar
    step: int
    stage: Stage


Event = RunStart | RunEnd | ApiCall | ApiReturn | VarState | VarStates | MetaChange


def single_events(events: Iterable[Event]) -> Iterator[Event]:
    """The events with every :class:`VarStates` expanded into its :class:`VarState` s."""
    for event in events:
        if type(event) is VarStates:
            yield from event.expand()
        else:
            yield event


class Batch(msgspec.Struct, frozen=True, array_like=True):
    """What one socket message carries: consecutive events of one process.

    ``seq`` counts batches per process from 0 so the sidecar can see gaps;
    ``dropped_events`` is the producer's running total of events it had to drop
    (full queue, no sidecar) before this batch was sent.
    """

    schema_version: int
    run_id: str
    pid: int
    rank: int
    seq: int
    dropped_events: int
    events: list[Event]


@dataclass
class StoredEvent:
    """An event as readers see it: with the process (pid, rank) that sent it.

    Batches carry pid and rank once for all their events; the checker, inference
    and the offline tools need them per event.
    """

    pid: int
    rank: int
    event: Event
