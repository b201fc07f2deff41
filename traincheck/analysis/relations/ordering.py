"""Shared machinery of the ordering relations (FunctionCover, FunctionLead).

Both look at the *outermost* traced calls of one thread of one process, in
order (nested calls, such as ``autograd.backward`` inside ``Tensor.backward``,
are APIContain's business). Around each call of an API X there are two windows:

- the window *before* it: the APIs called since the previous X (or since the
  start of the stream) — Cover(A, X) holds there iff A is in it;
- the window *after* it: the APIs called until the next X (or the end of the
  stream) — Lead(X, B) holds there iff B is in it.

"The previous X" and "the next X" mean the X calls in the same loop position
(:func:`anchor_of`): the same stage and the same micro-batch of a step (how many
backward passes the step had begun before the call). An evaluation loop's
``DataLoader.__iter__`` does not close the window of the training loader's, and
under gradient accumulation each micro-batch's calls open and close windows with
the same micro-batch of the next step: every window spans one whole optimizer
step, whatever the number of micro-batches, so invariants learned with two
micro-batches per step hold with four (and a call doubled within one micro-batch,
such as a scheduler stepped twice, still closes its own window). Past
:data:`MICRO_POSITIONS` micro-batches the positions fold into one: a loop that never
calls a traced optimizer (a hand-written SGD update) never ends its step, and its
iterations then form windows with each other as in any plain loop.

:class:`ThreadOrder` maintains both windows in O(APIs) per call, and the same
class drives inference and checking, so the two cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from traincheck.analysis.calls import CallStart, Signal
from traincheck.analysis.invariants import APIParam
from traincheck.analysis.preconditions import MICRO_BATCH, FeatureKey, Scalar, feature_key

MIN_API_CALLS = 3
"""An API called fewer times than this (over all traces) takes part in no ordering pair."""

SKIPPED_API_MARKERS = (
    "is_available",
    "is_initialized",
    "get_rank",
    "get_world_size",
    "device_count",
)
"""Environment probes: their ordering says nothing about training (published tool's noise)."""


class ApiPair(NamedTuple):
    """The params of Cover(A, B) and Lead(A, B): the two APIs, A the one that runs first."""

    a: APIParam
    b: APIParam

    @property
    def names(self) -> tuple[str, str]:
        """(A, B) as API names."""
        return self.a.api_full_name, self.b.api_full_name


def is_ordering_candidate(api: str) -> bool:
    return not any(marker in api for marker in SKIPPED_API_MARKERS)


def outermost_call(signal: Signal) -> CallStart | None:
    """The call start, if the signal is the start of an outermost call."""
    if isinstance(signal, CallStart) and signal.event.parent_id == 0:
        return signal
    return None


MICRO_POSITIONS = 8
"""Micro-batch positions told apart by the ordering windows; later ones share one."""

Anchor = tuple[str, Scalar | None, int]
"""(API, stage, micro-batch position): the calls that open and close each other's
windows (see the module docstring)."""


def anchor_of(start: CallStart) -> Anchor:
    micro = start.props.get(MICRO_BATCH, 0)
    position = min(micro, MICRO_POSITIONS) if isinstance(micro, int) else 0
    return (start.api, start.props.get("meta_vars.stage"), position)


@dataclass
class ThreadOrder:
    """Order of outermost calls on one (pid, thread)."""

    counter: int = 0
    last_index: dict[str, int] = field(default_factory=dict)
    """The position of each API's last call, whatever its context."""
    anchor_index: dict[Anchor, int] = field(default_factory=dict)
    anchor_start: dict[Anchor, CallStart] = field(default_factory=dict)
    """The position and start of each API's last call in each context."""

    def called_since(self, anchor: Anchor, other: str) -> bool:
        """Whether ``other`` was called after the last ``anchor`` call (or ever, if none)."""
        return self.last_index.get(other, 0) > self.anchor_index.get(anchor, 0)

    def window_since(self, anchor: Anchor) -> frozenset[str]:
        """The APIs called after the last ``anchor`` call (since the start if none)."""
        ref = self.anchor_index.get(anchor, 0)
        return frozenset(a for a, i in self.last_index.items() if i > ref)

    def advance(self, start: CallStart, anchor: Anchor) -> None:
        """``start`` (whose :func:`anchor_of` is ``anchor``) is the latest call."""
        self.counter += 1
        self.last_index[start.api] = self.counter
        self.anchor_index[anchor] = self.counter
        self.anchor_start[anchor] = start


@dataclass
class WindowCollector:
    """Inference-side: records every before-window and after-window, deduplicated."""

    before: Counter[tuple[str, FeatureKey, frozenset[str]]] = field(default_factory=Counter)
    after: Counter[tuple[str, FeatureKey, frozenset[str]]] = field(default_factory=Counter)
    after_final: Counter[tuple[str, FeatureKey, frozenset[str]]] = field(default_factory=Counter)
    """After-windows still open when a trace ended: censored, so they can confirm a
    lead (B was called) but never refute one (the run may simply have stopped)."""
    calls: Counter[str] = field(default_factory=Counter)
    _threads: dict[tuple[int, int], ThreadOrder] = field(default_factory=dict)
    _keys: dict[tuple[tuple[int, int], Anchor], FeatureKey] = field(default_factory=dict)

    def begin_trace(self) -> None:
        self._threads.clear()
        self._keys.clear()

    def on_signal(self, signal: Signal) -> None:
        start = outermost_call(signal)
        if start is None:
            return
        thread_key = (start.pid, start.thread)
        order = self._threads.setdefault(thread_key, ThreadOrder())
        anchor = anchor_of(start)
        window = order.window_since(anchor)
        key = feature_key(start.props)
        self.before[(start.api, key, window)] += 1
        if anchor in order.anchor_index:
            self.after[(start.api, self._keys[(thread_key, anchor)], window)] += 1
        self._keys[(thread_key, anchor)] = key
        self.calls[start.api] += 1
        order.advance(start, anchor)

    def end_trace(self) -> None:
        for thread_key, order in sorted(self._threads.items()):
            for anchor in sorted(order.anchor_index, key=repr):
                key = self._keys[(thread_key, anchor)]
                self.after_final[(anchor[0], key, order.window_since(anchor))] += 1
        self._threads.clear()
        self._keys.clear()

    def candidate_pairs(self) -> Iterator[tuple[str, str]]:
        apis = sorted(
            a for a, n in self.calls.items() if n >= MIN_API_CALLS and is_ordering_candidate(a)
        )
        for first in apis:
            for second in apis:
                if first != second:
                    yield first, second
