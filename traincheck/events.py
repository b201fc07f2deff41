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

from typing import Literal

import msgspec

SCHEMA_VERSION = 1

Stage = Literal["init", "train", "eval"]
"""Training phase of an event: ``init`` before the first forward pass with grad
enabled, ``eval`` while grad is disabled or inference mode is on, else ``train``."""

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


class VarState(msgspec.Struct, frozen=True, array_like=True, tag="var"):
    """The state of one tracked variable (a parameter) at a well-defined point.

    ``call_id``/``phase`` say where it was taken: before (``pre``) or after
    (``post``) the traced call ``call_id``, or at discovery (``init``, call_id 0).
    ``digest`` covers every element of the tensor (see ``traincheck.tracer.digest``);
    it is None where the point needs only the gradient state (e.g. ``zero_grad``).
    """

    ts_ns: int
    call_id: int
    phase: Literal["pre", "post", "init"]
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


class MetaChange(msgspec.Struct, frozen=True, array_like=True, tag="meta"):
    """A meta-variable took a new value (step, stage, epoch or a user annotation)."""

    ts_ns: int
    thread: int
    key: str
    value: Scalar
    step: int
    stage: Stage


Event = RunStart | RunEnd | ApiCall | ApiReturn | VarState | MetaChange


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
