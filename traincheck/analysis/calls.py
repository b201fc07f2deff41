"""Rebuild API calls, with the variable states around them, from an event stream.

The tracer sends a call as ``ApiCall`` · ``VarState pre``… · ``VarState post``… ·
``ApiReturn`` (nested calls in between, linked by ``parent_id``). Inference and
the checker both need whole calls, so both feed events through one
:class:`CallTracker`, which emits a :class:`CallStart` when a call begins and a
:class:`CallRecord` when it returns. Only open calls are kept, so memory is
bounded by call depth, not by trace length.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from traincheck.analysis.preconditions import Scalar, as_scalar, example_props
from traincheck.analysis.var_attrs import (
    ANYTHING,
    CHANGED,
    DATA,
    GRAD,
    GRAD_VALUES,
    UNCHANGED,
    grad_state_text,
)
from traincheck.catalogue import AUTOGRAD_BACKWARD, TENSOR_BACKWARD
from traincheck.events import (
    ApiCall,
    ApiReturn,
    MetaChange,
    RunEnd,
    RunStart,
    StoredEvent,
    VarState,
)

BACKWARD_APIS = frozenset({TENSOR_BACKWARD, AUTOGRAD_BACKWARD})
"""The calls that start a micro-batch's backward pass (``Tensor.backward`` runs
``autograd.backward`` inside it: only the outermost one counts)."""

MAX_OPEN_CALLS_PER_PROCESS = 10_000
"""Calls that never return (a crashed thread) are forgotten beyond this many."""

Change = tuple[str, str, str | None, str | None]
"""(var_type, attr_name, pre_value, post_value) of a variable change inside a call."""


@dataclass(frozen=True)
class CallStart:
    """A traced call began; ``props`` are its precondition properties."""

    pid: int
    rank: int
    event: ApiCall
    props: dict[str, Scalar]

    @property
    def api(self) -> str:
        return self.event.api

    @property
    def thread(self) -> int:
        return self.event.thread


@dataclass
class CallRecord:
    """A traced call that returned, with the variable states taken around it."""

    start: CallStart
    pre: dict[str, VarState] = field(default_factory=dict)
    post: dict[str, VarState] = field(default_factory=dict)
    children: list[ApiCall] = field(default_factory=list)
    ret: ApiReturn | None = None

    @property
    def api(self) -> str:
        return self.start.api

    def observed_types(self) -> set[str]:
        """Variable types with both a pre and a post state (the only ones we can judge)."""
        return {s.var_type for name, s in self.pre.items() if name in self.post}

    def changes(self) -> set[Change]:
        """Every (type, attr, before, after) change some variable made during the call."""
        found: set[Change] = set()
        for name, before in self.pre.items():
            after = self.post.get(name)
            if after is None:
                continue
            if before.digest is not None and after.digest is not None:
                if before.digest != after.digest:
                    found.add((before.var_type, DATA, ANYTHING, CHANGED))
            if before.grad != after.grad:
                found.add(
                    (before.var_type, GRAD, GRAD_VALUES[before.grad], GRAD_VALUES[after.grad])
                )
        return found

    def transitions(self, var_type: str, attr: str) -> Counter[str]:
        """How the variables of a type fared, in words, for violation messages."""
        seen: Counter[str] = Counter()
        for name, before in self.pre.items():
            after = self.post.get(name)
            if after is None or before.var_type != var_type:
                continue
            if attr == GRAD:
                seen[f"{grad_state_text(before.grad)} -> {grad_state_text(after.grad)}"] += 1
            elif before.digest is None or after.digest is None:
                seen["not digested"] += 1
            else:
                seen[CHANGED if before.digest != after.digest else UNCHANGED] += 1
        return seen

    def child_apis(self) -> set[str]:
        return {c.api for c in self.children}


Signal = CallStart | CallRecord


@dataclass
class _Process:
    rank: int
    meta: dict[str, Scalar] = field(default_factory=dict)
    open_calls: dict[int, CallRecord] = field(default_factory=dict)
    step: int | None = None
    backwards_in_step: int = 0
    """Backward passes begun so far in ``step``: the ``micro_batch`` property."""

    def micro_batch(self, event: ApiCall) -> int:
        """How many backward passes ran before ``event`` in its step (0: the first
        micro-batch), counting ``event`` itself afterwards if it is an outermost one."""
        if event.step != self.step:
            self.step = event.step
            self.backwards_in_step = 0
        before = self.backwards_in_step
        if event.api in BACKWARD_APIS:
            parent = self.open_calls.get(event.parent_id) if event.parent_id else None
            if parent is None or parent.api not in BACKWARD_APIS:
                self.backwards_in_step += 1
        return before


class CallTracker:
    """Turns stored events into call signals, for every process of an interleaved stream."""

    def __init__(self) -> None:
        self._processes: dict[int, _Process] = {}

    def feed(self, stored: StoredEvent) -> Signal | None:
        """Consume one event; return the call that started or finished, if any."""
        event = stored.event
        proc = self._processes.get(stored.pid)
        if proc is None:
            proc = self._processes[stored.pid] = _Process(stored.rank)
        if isinstance(event, ApiCall):
            return self._on_call(stored, proc, event)
        if isinstance(event, ApiReturn):
            record = proc.open_calls.pop(event.call_id, None)
            if record is not None:
                record.ret = event
            return record
        if isinstance(event, VarState):
            record = proc.open_calls.get(event.call_id)
            if record is not None and event.phase in ("pre", "post"):
                getattr(record, event.phase)[event.var_name] = event
        elif isinstance(event, MetaChange) and event.key not in ("step", "stage"):
            scalar = as_scalar(event.value)
            if scalar is not None:
                proc.meta[event.key] = scalar
            else:  # unset (an autocast context left): the meta-variable no longer exists
                proc.meta.pop(event.key, None)
        elif isinstance(event, (RunStart, RunEnd)):
            self._processes[stored.pid] = _Process(stored.rank)
        return None

    def _on_call(self, stored: StoredEvent, proc: _Process, event: ApiCall) -> CallStart:
        props = example_props(
            event.step, event.stage, proc.meta, event.args, proc.micro_batch(event)
        )
        start = CallStart(stored.pid, stored.rank, event, props)
        parent = proc.open_calls.get(event.parent_id) if event.parent_id else None
        if parent is not None:
            parent.children.append(event)
        if len(proc.open_calls) >= MAX_OPEN_CALLS_PER_PROCESS:
            proc.open_calls.pop(next(iter(proc.open_calls)))
        proc.open_calls[event.call_id] = CallRecord(start)
        return start
