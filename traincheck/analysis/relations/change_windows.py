"""Where a variable's content changed: the traced calls between two observations of it.

The tracer digests a variable only at a few points (before and after
``Optimizer.step``, around outermost module calls for buffers), so a change is
never seen as it happens: it is seen as two consecutive observations of the same
variable, in the same process, whose digests differ. The change happened
somewhere in between, and the traced calls that overlapped that *window* are the
only candidates for having made it. ChangeWithin learns and checks "every change
of ``T.data`` lies within a call of X" from exactly these windows, in inference
and in checking alike (this module is their one code path).

Positions on a process's timeline: every call start and every return takes the
next tick; a *pre* state sits just before its call's start, a *post* state just
after its return. So the window from the pre to the post of one call contains
that call (and whatever ran inside it), and the window from the post of one step
to the pre of the next contains neither step, only what ran between them.

A window is *unknown* (no example, never judged) when:

- the process's call log no longer reaches back to its start (more than
  ``MAX_LOGGED_TICKS`` calls since: memory stays bounded);
- the step counter advanced by more than one across it: a sampled trace
  (``--sampling-interval``) records nothing of the steps it skips, so a window
  over them lacks the calls that ran there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from traincheck.analysis.calls import CallRecord, CallStart, Signal
from traincheck.catalogue import CONTENT_WRITERS
from traincheck.events import ApiCall, VarState

MAX_LOGGED_TICKS: Final = 200_000
"""Calls (starts and returns) a process's log keeps: a window older than this is unknown."""

MAX_SUSPECTS: Final = 4
"""Calls of a window kept as evidence (the writers first, then the earliest calls)."""


@dataclass(frozen=True)
class Window:
    """The traced calls that overlapped the span between two observations."""

    apis: frozenset[str]
    """Every API with a call that overlapped the window (started, returned or ran
    across it)."""
    bracket: str | None
    """The API of the call whose pre and post states bound the window (the change
    was seen across one call of it), None when the observations came from two calls."""
    counts: tuple[tuple[str, int], ...] = ()
    """Calls started in the window, per API, in order of first call (for messages)."""
    suspects: tuple[ApiCall, ...] = ()
    """A few calls started in the window: those of APIs that overwrite content
    (``catalogue.CONTENT_WRITERS``), then the earliest ones."""


@dataclass(frozen=True)
class VarChange:
    """One variable whose digest differed between two consecutive observations."""

    name: str
    var_type: str
    before: VarState
    after: VarState
    before_api: str
    """The API of the call the earlier observation was taken at."""
    after_api: str
    window: Window


@dataclass
class _Observation:
    state: VarState
    api: str
    position: int


@dataclass
class _Timeline:
    """One process: its ticks, the calls logged since a while, the open calls and the
    last observation of every variable."""

    tick: int = 0
    first_logged: int = 1
    log: list[ApiCall | str] = field(default_factory=list)
    """Entry ``t - first_logged`` is what happened at tick ``t``: a call's start (its
    event) or a return (its API)."""
    open: dict[int, tuple[str, int]] = field(default_factory=dict)
    """call id -> (api, start tick) of the calls that have not returned."""
    last: dict[str, _Observation] = field(default_factory=dict)

    def advance(self, entry: ApiCall | str) -> int:
        self.tick += 1
        self.log.append(entry)
        if len(self.log) > 2 * MAX_LOGGED_TICKS:
            drop = len(self.log) - MAX_LOGGED_TICKS
            del self.log[:drop]
            self.first_logged += drop
        return self.tick

    def window(self, start: int, end: int, bracket: str | None) -> Window | None:
        """The calls overlapping positions (start, end), or None when the log lost them."""
        if start // 2 + 1 < self.first_logged:
            return None
        apis = {api for api, started in self.open.values() if 2 * started < start}
        counts: Counter[str] = Counter()
        writers: list[ApiCall] = []
        earliest: list[ApiCall] = []
        for tick in range(start // 2 + 1, (end + 1) // 2):
            entry = self.log[tick - self.first_logged]
            if isinstance(entry, str):
                apis.add(entry)
                continue
            apis.add(entry.api)
            counts[entry.api] += 1
            if entry.api in CONTENT_WRITERS and len(writers) < MAX_SUSPECTS:
                writers.append(entry)
            elif len(earliest) < MAX_SUSPECTS:
                earliest.append(entry)
        suspects = (*writers, *earliest)[:MAX_SUSPECTS]
        return Window(frozenset(apis), bracket, tuple(counts.items()), suspects)


class ChangeWindows:
    """Turns call signals into the variable changes they reveal, with their windows.

    ``var_types``: the variable types to follow (None: every type).
    """

    def __init__(self, var_types: frozenset[str] | None = None) -> None:
        self._var_types = var_types
        self._processes: dict[int, _Timeline] = {}

    def reset(self) -> None:
        """A new trace begins: nothing of the previous one carries over."""
        self._processes.clear()

    def feed(self, signal: Signal) -> list[VarChange]:
        """Consume one signal; the changes its states reveal (only a returned call has any)."""
        if isinstance(signal, CallStart):
            timeline = self._timeline(signal.pid)
            tick = timeline.advance(signal.event)
            timeline.open[signal.event.call_id] = (signal.api, tick)
            return []
        timeline = self._timeline(signal.start.pid)
        opened = timeline.open.pop(signal.start.event.call_id, None)
        returned = timeline.advance(signal.api)
        if opened is None or not (signal.pre or signal.post):
            return []
        started = opened[1]
        return [
            *self._observe(timeline, signal, signal.pre.values(), 2 * started - 1),
            *self._observe(timeline, signal, signal.post.values(), 2 * returned + 1),
        ]

    def _timeline(self, pid: int) -> _Timeline:
        timeline = self._processes.get(pid)
        if timeline is None:
            timeline = self._processes[pid] = _Timeline()
        return timeline

    def _observe(
        self, timeline: _Timeline, record: CallRecord, states: Iterable[VarState], position: int
    ) -> list[VarChange]:
        changes: list[VarChange] = []
        windows: dict[tuple[int, str | None], Window | None] = {}
        for state in states:
            if state.digest is None:
                continue
            if self._var_types is not None and state.var_type not in self._var_types:
                continue
            previous = timeline.last.get(state.var_name)
            timeline.last[state.var_name] = _Observation(state, record.api, position)
            if previous is None or previous.state.digest == state.digest:
                continue
            if state.step - previous.state.step > 1:
                continue  # steps in between may not have been recorded at all
            bracket = record.api if previous.state.call_id == state.call_id else None
            key = (previous.position, bracket)
            if key not in windows:
                windows[key] = timeline.window(previous.position, position, bracket)
            window = windows[key]
            if window is not None:
                changes.append(
                    VarChange(
                        state.var_name,
                        state.var_type,
                        previous.state,
                        state,
                        previous.api,
                        record.api,
                        window,
                    )
                )
        return changes
