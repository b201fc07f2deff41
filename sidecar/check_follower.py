"""The live check follows the stored trace in its own thread: storage never waits for it.

The sidecar's receiving loop decodes a batch, appends it to the store and hands it
to :class:`CheckFollower` (:meth:`~CheckFollower.stored`), which never blocks: the
batch goes into a bounded in-memory handoff, or, when that is full because the
check is slower than the job, nowhere -- it is on disk already. The checker
thread checks the handoff in order; once it has fallen behind it reads the
batches back from the segments, from just past the last one it checked up to the
last one stored, and returns to the handoff when it has caught up. So a slow
check (a very large invariants file, a loaded machine) costs the trace nothing:
the check lags, says by how much, and at the end (:meth:`~CheckFollower.finish`)
checks everything stored before the summary is written. Alerts keep their steps:
every event is checked, in the order it was received.

A batch the store could not write (disk full) is checked from the handoff while
there is room, and otherwise counted as never checked: nothing else holds it.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Protocol

from traincheck.events import Batch, StoredEvent, single_events
from traincheck.records import LiveCheckLag, SidecarProgress
from traincheck.sidecar.segment_codec import FRAME_HEADER, SEGMENT_MAGIC
from traincheck.sidecar.store import StoredAt
from traincheck.wire import MAX_MESSAGE_BYTES, WireError, decode_batch

HANDOFF_MAX_BYTES = 8 * 2**20
"""Encoded bytes of batches held in memory for a checker that lags. Past it, batches
are read back from disk: memory stays bounded however far behind the check falls,
while a check that keeps up never reads the disk."""

IDLE_S = 0.1
"""How long the checker waits for work before it lets held alerts out anyway."""

SLOW_CHECK_ENV = "TRAINCHECK_TEST_SLOW_CHECK_S"
"""Tests only: seconds the checker sleeps after each batch, so a test can make the
check fall behind the job without a huge invariants file (documented in
``tests/README.md``). It slows only the checker thread, never storage."""

MAX_READ_ERRORS_KEPT = 5


class LiveCheckLike(Protocol):
    """What the follower needs of :class:`~traincheck.sidecar.live_check.LiveCheck`."""

    def feed(self, stored: StoredEvent) -> None: ...

    def pump(self) -> None: ...


class Position(NamedTuple):
    """A place in the stored trace: the index of a segment this sidecar wrote, and
    a byte offset in it."""

    segment: int
    offset: int


class _Handed(NamedTuple):
    batch: Batch
    size: int
    stored_at: Position | None


class _DiskRange(NamedTuple):
    path: Path
    start: Position
    end: int


_DONE = object()


def slow_check_s() -> float:
    """The test-only slowdown from :data:`SLOW_CHECK_ENV` (0 when unset or invalid)."""
    try:
        return max(0.0, float(os.environ.get(SLOW_CHECK_ENV, "0")))
    except ValueError:
        return 0.0


class CheckFollower:
    """Feeds every received batch to ``check`` from a thread of its own, behind storage.

    Only the checker thread touches ``check`` until :meth:`finish` has returned."""

    def __init__(
        self,
        check: LiveCheckLike,
        *,
        handoff_max_bytes: int = HANDOFF_MAX_BYTES,
        slow_s: float = 0.0,
    ) -> None:
        self.check = check
        self._handoff_max_bytes = handoff_max_bytes
        self._slow_s = slow_s
        self._cond = threading.Condition()
        self._handoff: deque[_Handed] = deque()
        self._handoff_bytes = 0
        self._behind = False
        self._closing = False
        self._segments: list[Path] = []
        """Segments this sidecar wrote, in order; ``_ends`` holds how far each is stored."""
        self._ends: list[int] = []
        self._position = Position(0, len(SEGMENT_MAGIC))
        """Just past the last stored batch checked (checker thread only)."""
        self._received = 0
        self._checked = 0
        self._events_received = 0
        self._events_checked = 0
        """Events checked, or skipped because nothing holds them (under ``_cond``)."""
        self.lag = LiveCheckLag()
        self._thread = threading.Thread(target=self._run, name="live-check", daemon=True)
        self._thread.start()

    def stored(self, batch: Batch, size: int, stored_at: StoredAt | None) -> None:
        """The receiver took ``batch`` (``size`` bytes encoded) in and stored it at
        ``stored_at`` (None: not stored). Never blocks on the check."""
        with self._cond:
            self._received += 1
            self._events_received += len(batch.events)
            position = self._note_stored(stored_at)
            room = self._handoff_bytes + size <= self._handoff_max_bytes
            if not self._behind and room:
                self._handoff.append(_Handed(batch, size, position))
                self._handoff_bytes += size
            elif position is None:
                self._checked += 1  # nowhere to read it from: it is never checked
                self._events_checked += len(batch.events)
                self.lag.events_unchecked += len(batch.events)
            else:
                self._behind = True
            self.lag.most_behind_batches = max(
                self.lag.most_behind_batches, self._received - self._checked
            )
            self._cond.notify()

    def _note_stored(self, stored_at: StoredAt | None) -> Position | None:
        if stored_at is None:
            return None
        if not self._segments or self._segments[-1] != stored_at.segment:
            self._segments.append(stored_at.segment)
            self._ends.append(stored_at.end)
        self._ends[-1] = stored_at.end
        return Position(len(self._segments) - 1, stored_at.end)

    def batches_behind(self) -> int:
        """Batches received and not yet checked, now."""
        with self._cond:
            return self._received - self._checked

    def progress(self) -> SidecarProgress:
        """How far the check has got through what was received (a snapshot)."""
        with self._cond:
            return SidecarProgress(
                events_checked=self._events_checked, events_received=self._events_received
            )

    def finish(
        self,
        report: Callable[[SidecarProgress], None] | None = None,
        *,
        every_s: float = 0.5,
    ) -> LiveCheckLag:
        """Check everything received (from disk where the check fell behind), then
        stop the thread; afterwards ``check`` is the caller's again. ``report`` is
        given the progress at once and then every ``every_s`` until the check is done,
        so whoever waits for it can tell a long check from a stuck one."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        while self._thread.is_alive():
            if report is not None:
                report(self.progress())
            self._thread.join(every_s)
        return self.lag

    def _run(self) -> None:
        while True:
            work = self._next_work()
            if work is _DONE:
                return
            if work is None:
                self.check.pump()  # the job went quiet: held alerts are due anyway
            elif isinstance(work, _Handed):
                self._check_batch(work.batch)
                if work.stored_at is not None:
                    self._position = work.stored_at
                self._done_one(len(work.batch.events))
            elif isinstance(work, _DiskRange):
                self._check_from_disk(work)

    def _next_work(self) -> _Handed | _DiskRange | object | None:
        """The next thing to check; None after an idle wait; ``_DONE`` at the end."""
        with self._cond:
            while True:
                if self._handoff:
                    handed = self._handoff.popleft()
                    self._handoff_bytes -= handed.size
                    return handed
                if self._behind:
                    disk = self._unchecked_on_disk()
                    if disk is not None:
                        return disk
                    self._behind = False  # caught up: back to the handoff
                if self._closing:
                    return _DONE
                if not self._cond.wait(IDLE_S):
                    return None

    def _unchecked_on_disk(self) -> _DiskRange | None:
        """The stored bytes past the checker's position, one segment at a time."""
        position = self._position
        while position.offset >= self._ends[position.segment]:
            if position.segment + 1 >= len(self._segments):
                self._position = position
                return None
            position = Position(position.segment + 1, len(SEGMENT_MAGIC))
        self._position = position
        return _DiskRange(self._segments[position.segment], position, self._ends[position.segment])

    def _check_from_disk(self, disk: _DiskRange) -> None:
        """Check the batches stored in ``disk``; what cannot be read back is skipped
        and said (the trace itself is as the store left it)."""
        try:
            with open(disk.path, "rb") as handle:
                offset = disk.start.offset
                while offset < disk.end:
                    batch, offset = _read_batch(handle.fileno(), offset, disk.end)
                    self._check_batch(batch)
                    self.lag.batches_from_disk += 1
                    self._position = Position(disk.start.segment, offset)
                    self._done_one(len(batch.events))
        except (OSError, WireError, ValueError) as exc:
            if len(self.lag.read_errors) < MAX_READ_ERRORS_KEPT:
                self.lag.read_errors.append(f"{disk.path.name}: {exc}")
            self._position = Position(disk.start.segment, disk.end)

    def _check_batch(self, batch: Batch) -> None:
        feed, pid, rank = self.check.feed, batch.pid, batch.rank
        for event in single_events(batch.events):
            feed(StoredEvent(pid, rank, event))
        self.lag.batches_checked += 1
        if self._slow_s:
            time.sleep(self._slow_s)

    def _done_one(self, events: int) -> None:
        with self._cond:
            self._checked += 1
            self._events_checked += events


def _read_batch(fd: int, offset: int, end: int) -> tuple[Batch, int]:
    """The batch framed at ``offset`` (which this sidecar wrote whole before ``end``)
    and the offset past it."""
    header = os.pread(fd, FRAME_HEADER.size, offset)
    if len(header) < FRAME_HEADER.size:
        raise ValueError(f"frame header cut short at byte {offset}")
    length, crc = FRAME_HEADER.unpack(header)
    after = offset + FRAME_HEADER.size + length
    if length > MAX_MESSAGE_BYTES or after > end:
        raise ValueError(f"frame at byte {offset} runs past what was stored")
    payload = os.pread(fd, length, offset + FRAME_HEADER.size)
    if len(payload) < length or zlib.crc32(payload) != crc:
        raise ValueError(f"frame at byte {offset} changed on disk")
    return decode_batch(payload), after
