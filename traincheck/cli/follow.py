"""``traincheck-check --follow``: check a trace directory while a sidecar writes it.

The sidecar appends whole frames to ``segment-NNNNN.tcs`` files and rewrites
``run.json`` atomically (docs/trace-format.md). We tail every segment from the
byte offset we reached; a frame that is not complete yet is simply waited for
(unlike :func:`~traincheck.sidecar.store.read_trace`, which reports it as
damage). ``watchdog`` wakes us when a file changes, with a short poll as a
fallback for filesystems that send no events.

The follow ends when ``run.json`` says the run is no longer ``running``, or when
the sidecar process named in it is gone (a killed sidecar never finalises
``run.json``), or after an optional timeout.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from traincheck.analysis.alert_sink import AlertSink
from traincheck.analysis.checker import Checker
from traincheck.analysis.results import ViolationLedger
from traincheck.events import StoredEvent, single_events
from traincheck.sidecar.store import SEGMENT_MAGIC
from traincheck.tracedir import SEGMENT_GLOB, TraceDir
from traincheck.wire import WireError, decode_batch

FRAME_HEADER = struct.Struct("<II")
"""Payload length and CRC-32, both little-endian u32 (docs/trace-format.md)."""

POLL_S = 0.25
"""Longest wait between looks at the directory, even without a file event."""


class SegmentTail:
    """Reads the frames appended to one segment since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.broken: str | None = None

    def read_new(self) -> Iterator[StoredEvent]:
        if self.broken is not None:
            return
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError as exc:
            self.broken = f"{self.path.name}: unreadable ({exc.strerror})"
            return
        position = 0
        if self.offset == 0:
            if len(data) < len(SEGMENT_MAGIC):
                return
            if not data.startswith(SEGMENT_MAGIC):
                self.broken = f"{self.path.name}: not a trace segment; skipped"
                return
            position = len(SEGMENT_MAGIC)
        while position + FRAME_HEADER.size <= len(data):
            length, crc = FRAME_HEADER.unpack_from(data, position)
            start = position + FRAME_HEADER.size
            if start + length > len(data):
                break  # the rest of this frame has not been written yet
            payload = data[start : start + length]
            if zlib.crc32(payload) != crc:
                where = self.offset + position
                self.broken = f"{self.path.name}: checksum mismatch at byte {where}"
                break
            try:
                batch = decode_batch(payload)
            except WireError as exc:
                self.broken = f"{self.path.name}: undecodable batch ({exc})"
                break
            position = start + length
            for event in single_events(batch.events):
                yield StoredEvent(batch.pid, batch.rank, event)
        self.offset += position


class TraceFollower:
    """Every segment of a growing trace, tailed in order."""

    def __init__(self, trace_dir: Path) -> None:
        self.trace_dir = trace_dir
        self._tails: dict[Path, SegmentTail] = {}
        self.warnings: list[str] = []

    def new_events(self) -> Iterator[StoredEvent]:
        for path in sorted(self.trace_dir.glob(SEGMENT_GLOB)):
            tail = self._tails.get(path)
            if tail is None:
                tail = self._tails[path] = SegmentTail(path)
            was_broken = tail.broken
            yield from tail.read_new()
            if tail.broken and not was_broken:
                self.warnings.append(tail.broken)

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
        return not _process_alive(manifest.sidecar_pid)


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


def _start_observer(trace_dir: Path, wake: threading.Event):
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


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
