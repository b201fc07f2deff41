"""``traincheck-check --follow``: check a trace directory while a sidecar writes it.

The sidecar appends whole frames to its segment files and rewrites ``run.json``
atomically (docs/trace-format.md). We tail every segment from the byte offset we
reached (:class:`~traincheck.sidecar.segment_codec.SegmentTail`); a frame that is
not complete yet is simply waited for (unlike
:func:`~traincheck.sidecar.store.read_trace`, which reports it as damage).
``watchdog`` wakes us when a file changes, with a short poll as a fallback for
filesystems that send no events.

The follow ends when ``run.json`` says the run is no longer ``running``, or when
the sidecar process named in it is gone (a killed sidecar never finalises
``run.json``), or after an optional timeout.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from traincheck.analysis.alert_sink import AlertSink
from traincheck.analysis.checker import Checker
from traincheck.analysis.results import ViolationLedger
from traincheck.events import StoredEvent, single_events
from traincheck.processes import pid_alive
from traincheck.sidecar.segment_codec import SegmentTail
from traincheck.tracedir import TraceDir
from traincheck.wire import WireError, decode_batch

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

POLL_S = 0.25
"""Longest wait between looks at the directory, even without a file event."""


class TraceFollower:
    """Every segment of a growing trace, tailed in order."""

    def __init__(self, trace_dir: Path) -> None:
        self.trace_dir = trace_dir
        self._tails: dict[Path, SegmentTail] = {}
        self.warnings: list[str] = []

    def new_events(self) -> Iterator[StoredEvent]:
        for path in TraceDir(self.trace_dir).segments():
            tail = self._tails.get(path)
            if tail is None:
                tail = self._tails[path] = SegmentTail(path)
            was_damaged = tail.damage
            yield from _events(tail)
            if tail.damage and not was_damaged:
                self.warnings.append(tail.damage)

    def run_is_over(self) -> bool:
        """``run.json`` left "running", or the sidecar that writes it is gone."""
        try:
            manifest = TraceDir(self.trace_dir).read_manifest()
        except (OSError, ValueError):
            return False  # being rewritten (atomically) or not there yet
        if manifest.status != "running":
            return True
        if manifest.hostname != socket.gethostname():
            return False  # cannot tell from here; the status or the timeout ends it
        return not pid_alive(manifest.sidecar_pid)


def _events(tail: SegmentTail) -> Iterator[StoredEvent]:
    """The events of the frames appended to ``tail`` since the last look."""
    for frame in tail.read_new():
        try:
            batch = decode_batch(frame.payload)
        except WireError as exc:
            tail.damaged(f"undecodable batch ({exc})")
            return
        for event in single_events(batch.events):
            yield StoredEvent(batch.pid, batch.rank, event)


def follow_trace(
    trace_dir: Path,
    checker: Checker,
    ledger: ViolationLedger,
    sink: AlertSink,
    *,
    timeout_s: float | None = None,
) -> list[str]:
    """Check ``trace_dir`` as it grows until its run ends; return read warnings."""
    follower = TraceFollower(trace_dir)
    wake = threading.Event()
    observer = _start_observer(trace_dir, wake)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while True:
            over = follower.run_is_over()  # look before reading: nothing is missed
            _check_new(follower, checker, ledger, sink)
            if over or (deadline is not None and time.monotonic() >= deadline):
                break
            wake.wait(POLL_S)
            wake.clear()
    finally:
        if observer is not None:
            observer.stop()
            observer.join(timeout=2)
    for violation in checker.finish():
        ledger.add(violation)
        sink.add(violation)
    return follower.warnings


def _check_new(
    follower: TraceFollower, checker: Checker, ledger: ViolationLedger, sink: AlertSink
) -> None:
    for stored in follower.new_events():
        for violation in checker.feed(stored):
            ledger.add(violation)
            sink.add(violation)
    sink.pump(checker.current_step)


def _start_observer(trace_dir: Path, wake: threading.Event) -> BaseObserver | None:
    """A watchdog observer that sets ``wake`` on any change in the trace directory."""
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        return None  # polling alone still works

    class _Wake(FileSystemEventHandler):
        def on_any_event(self, event: object) -> None:
            wake.set()

    observer = Observer()
    observer.schedule(_Wake(), str(trace_dir), recursive=False)
    observer.daemon = True
    observer.start()
    return observer
