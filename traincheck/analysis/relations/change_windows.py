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
  ``MAX_LOGGED_TICKS`` calls since: the log holds API names only and is
  trimmed, so memory stays bounded);
- the step counter advanced by more than one across it: a sampled trace
  (``--sampling-interval``) records nothing of the steps it skips, so a window
  over them lacks the calls that ran there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from traincheck.analysis.calls import MAX_OPEN_CALLS_PER_PROCESS, CallRecord, CallStart, Signal
from traincheck.catalogue import CONTENT_WRITERS
from traincheck.events import ApiCall, VarState

MAX_LOGGED_TICKS: Final = 100_000
"""Calls (starts and returns) a process's log keeps at least: a window older is unknown."""

MAX_SUSPECTS: Final = 4
"""Calls of content writers a window keeps as evidence (the earliest ones)."""


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
    """The first calls started in the window of APIs that overwrite contents
    (``catalogue.CONTENT_WRITERS``)."""


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
    log: list[str] = field(default_factory=list)
    """Entry ``t - first_logged`` is the API of the call that started or returned at
    tick ``t`` (names only: the log must stay small)."""
    starts: bytearray = field(default_factory=bytearray)
    """Beside ``log``: 1 where the tick is a call's start, 0 where it is a return."""
    writers: dict[int, ApiCall] = field(default_factory=dict)
    """tick -> the call of a content writer started then (the evidence of an alert)."""
    open: dict[int, tuple[str, int]] = field(default_factory=dict)
    """call id -> (api, start tick) of the calls that have not returned."""
    last: dict[str, _Observation] = field(default_factory=dict)

    def start(self, event: ApiCall) -> None:
        tick = self._advance(event.api, start=True)
        if event.api in CONTENT_WRITERS:
            self.writers[tick] = event
        if len(self.open) >= MAX_OPEN_CALLS_PER_PROCESS:
            self.open.pop(next(iter(self.open)))  # never returned: forgotten, as in calls.py
        self.open[event.call_id] = (event.api, tick)

    def finish(self, record: CallRecord) -> tuple[int, int] | None:
        """(start tick, return tick) of a returned call; None when its start was not seen."""
        opened = self.open.pop(record.start.event.call_id, None)
        returned = self._advance(record.api, start=False)
        return None if opened is None else (opened[1], returned)

    def _advance(self, api: str, *, start: bool) -> int:
        self.tick += 1
        self.log.append(api)
        self.starts.append(start)
        if len(self.log) > 2 * MAX_LOGGED_TICKS:
            drop = len(self.log) - MAX_LOGGED_TICKS
            del self.log[:drop]
            del self.starts[:drop]
            self.first_logged += drop
            self.writers = {t: c for t, c in self.writers.items() if t >= self.first_logged}
        return self.tick

    def window(self, start: int, end: int, bracket: str | None) -> Window | None:
        """The calls overlapping positions (start, end), or None when the log lost them."""
        first = start // 2 + 1
        if first < self.first_logged:
            return None
        apis = {api for api, started in self.open.values() if 2 * started < start}
        counts: Counter[str] = Counter()
        suspects: list[ApiCall] = []
        for tick in range(first, (end + 1) // 2):
            index = tick - self.first_logged
            api = self.log[index]
            apis.add(api)
            if self.starts[index]:
                counts[api] += 1
                writer = self.writers.get(tick)
                if writer is not None and len(suspects) < MAX_SUSPECTS:
                    suspects.append(writer)
        return Window(frozenset(apis), bracket, tuple(counts.items()), tuple(suspects))


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
            self._timeline(signal.pid).start(signal.event)
            return []
        timeline = self._timeline(signal.start.pid)
        ticks = timeline.finish(signal)
        if ticks is None or not (signal.pre or signal.post):
            return []
        started, returned = ticks
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
