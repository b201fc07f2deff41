"""The trace store: one directory per run, crash-safe and loadable in one call.

The directory's files are named by :class:`~traincheck.tracedir.TraceDir`
(documented in ``docs/trace-format.md``): ``run.json``, and segments holding the
batches exactly as they came off the socket, rotated every ``SEGMENT_MAX_BYTES``.
Segments are framed by :mod:`traincheck.sidecar.segment_codec`. Frames are
appended with a single ``write`` per batch, so a killed sidecar or a full disk
leaves every complete frame readable; the reader stops at the first torn or
corrupt frame of a segment, keeps what came before and says so.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from traincheck.errors import NotATraceError
from traincheck.events import Batch, StoredEvent, single_events
from traincheck.records import ForeignRecordError, RunManifest
from traincheck.sidecar.segment_codec import (
    SEGMENT_MAGIC,
    Frame,
    encode_frame,
    is_segment,
    iter_frames,
    next_frame_at,
)
from traincheck.tracedir import TraceDir
from traincheck.wire import WireError, decode_batch, decode_batch_header

if TYPE_CHECKING:
    import pandas as pd

SEGMENT_MAX_BYTES = 256 * 1024 * 1024

MAX_WRITE_ERRORS_KEPT = 20
"""Distinct write errors kept for the summary (a full disk fails every write the
same way: that is one error, said once, with the batches it cost counted)."""


@dataclass(frozen=True)
class StoredAt:
    """Where a batch was stored: its segment and the offset just past its frame, so
    the live check can follow the stored trace (:mod:`traincheck.sidecar.check_follower`)."""

    segment: Path
    end: int


class TraceWriter:
    """Appends received batches to segment files; never raises into the caller's loop.

    A write that fails (disk full, directory gone) is recorded in ``write_errors``
    and the batch is counted in ``batches_lost``; later batches are still tried.
    """

    def __init__(self, trace_dir: Path, *, segment_max_bytes: int = SEGMENT_MAX_BYTES):
        self.trace_dir = trace_dir
        self._paths = TraceDir(trace_dir)
        self.segment_max_bytes = segment_max_bytes
        self.batches_written = 0
        self.batches_lost = 0
        self.bytes_written = 0
        self.write_errors: list[str] = []
        self._segment_index = -1
        self._fd: int | None = None
        self._segment_bytes = 0

    def append(self, payload: bytes | memoryview) -> StoredAt | None:
        """Persist one encoded batch and say where; None (counted) if it could not be."""
        frame = encode_frame(payload)
        try:
            if self._fd is None or self._segment_bytes + len(frame) > self.segment_max_bytes:
                self._open_next_segment()
            assert self._fd is not None
            _write_all(self._fd, frame)
        except OSError as exc:
            self._discard_partial_frame()
            self.batches_lost += 1
            self.record_error(f"{exc.strerror or exc} ({self.trace_dir})")
            return None
        self._segment_bytes += len(frame)
        self.bytes_written += len(frame)
        self.batches_written += 1
        return StoredAt(self._paths.segment(self._segment_index), self._segment_bytes)

    def record_error(self, error: str) -> None:
        """Keep ``error`` for the summary unless the same one is already kept."""
        if error not in self.write_errors and len(self.write_errors) < MAX_WRITE_ERRORS_KEPT:
            self.write_errors.append(error)

    def _discard_partial_frame(self) -> None:
        """Cut a half-written frame off the segment: the reader stops at the first
        torn frame, so leaving it would hide every later batch of the segment.
        If even that fails, the next batch starts a fresh segment."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, self._segment_bytes)
        except OSError:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def _open_next_segment(self) -> None:
        self.close()
        fd, path = self._create_segment_file()
        try:
            _write_all(fd, SEGMENT_MAGIC)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        self._fd = fd
        self._segment_bytes = len(SEGMENT_MAGIC)

    def _create_segment_file(self) -> tuple[int, Path]:
        """A new segment file; never reopens an existing one (its frames would be
        interleaved with a second magic header)."""
        while True:
            self._segment_index += 1
            path = self._paths.segment(self._segment_index)
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
                return os.open(path, flags, 0o600), path
            except FileExistsError:
                continue

    def close(self) -> None:
        """Flush segment data to disk and close the current segment."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        except OSError as exc:
            self.record_error(f"fsync failed: {exc.strerror or exc} ({self.trace_dir})")
        finally:
            os.close(fd)


MANIFEST_RESERVE_BYTES = 64 * 1024
"""Held for ``run.json``: its final form (counters, one summary per process) must be
writable even when the segments have filled the disk."""


class SpaceReserve:
    """Disk space set aside at the start, given up when a small file must be written
    on a full disk (``release``). Best effort: without it nothing is worse than before."""

    def __init__(self, path: Path, size: int = MANIFEST_RESERVE_BYTES) -> None:
        self.path: Path | None = path
        try:
            self._create(path, size)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(path)
            self.path = None

    @staticmethod
    def _create(path: Path, size: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:  # left by a sidecar that was killed: ours to replace
            os.unlink(path)
            fd = os.open(path, flags, 0o600)
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, size)
            else:
                _write_all(fd, bytes(size))
        finally:
            os.close(fd)

    def release(self) -> bool:
        """Give the space back; whether there was any to give."""
        path, self.path = self.path, None
        if path is None:
            return False
        with contextlib.suppress(OSError):
            os.unlink(path)
        return True


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` may write less than asked (large frames, signals); finish the job."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


@dataclass
class Trace:
    """A trace read back from disk: the manifest, the batches, and what was damaged.

    ``manifest`` is None when ``run.json`` is missing or unreadable (a warning says
    which)."""

    path: Path
    manifest: RunManifest | None
    batches: list[Batch] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def events(self) -> Iterator[StoredEvent]:
        """All events, in the order the sidecar received them."""
        for batch in self.batches:
            for event in single_events(batch.events):
                yield StoredEvent(batch.pid, batch.rank, event)

    def to_frame(self) -> pd.DataFrame:
        """Load the whole trace into one pandas DataFrame (one row per event)."""
        from traincheck.sidecar.frame import batches_to_frame

        return batches_to_frame(self.batches)


def read_trace(path: str | Path) -> Trace:
    """Read a trace directory written by the sidecar.

    Raises :class:`NotATraceError` when ``path`` is missing or holds no trace.
    Damage (a torn last frame, a bad checksum, an unreadable manifest) never
    raises: everything before it is returned and ``Trace.warnings`` says what
    was skipped.
    """
    trace_dir = TraceDir(path)
    if not trace_dir.root.exists():
        raise NotATraceError(f"trace directory not found: {trace_dir.root}")
    if not trace_dir.root.is_dir():
        raise NotATraceError(f"not a directory: {trace_dir.root}")
    if not trace_dir.holds_trace():
        raise NotATraceError(
            f"{trace_dir.root} is not a TrainCheck trace (no {trace_dir.manifest.name})"
        )
    manifest, warning = _read_manifest(trace_dir)
    trace = Trace(path=trace_dir.root, manifest=manifest)
    if warning is not None:
        trace.warnings.append(warning)
    for segment in trace_dir.segments():
        _read_segment(segment, trace)
    return trace


def _read_manifest(trace_dir: TraceDir) -> tuple[RunManifest | None, str | None]:
    """The manifest, or None and why; raises NotATraceError for another tool's file."""
    name = trace_dir.manifest.name
    if not trace_dir.manifest.is_file():
        return None, f"{name} is missing; reading segments only"
    try:
        return trace_dir.read_manifest(), None
    except ForeignRecordError:
        raise NotATraceError(f"{trace_dir.manifest} is not a TrainCheck trace manifest") from None
    except (OSError, ValueError) as exc:
        return None, f"{name} is unreadable ({exc}); reading segments"


def _read_segment(segment: Path, trace: Trace) -> None:
    try:
        data = segment.read_bytes()
    except OSError as exc:
        trace.warnings.append(f"{segment.name}: unreadable ({exc.strerror}); skipped")
        return
    if not is_segment(data):
        trace.warnings.append(f"{segment.name}: not a trace segment; skipped")
        return
    start = len(SEGMENT_MAGIC)
    while start < len(data):
        damage = _read_frames(data, start, trace)
        if damage is None:
            return
        problem, offset = damage
        resume = next_frame_at(data, offset)
        if resume is None:
            trace.warnings.append(
                f"{segment.name}: {problem} at byte {offset}; kept the "
                f"{len(trace.batches)} batches read so far, ignored {len(data) - offset} bytes"
            )
            return
        trace.warnings.append(
            f"{segment.name}: {problem} at byte {offset}; skipped {resume - offset} bytes, "
            f"resumed at the next intact frame (byte {resume})"
        )
        start = resume


def _read_frames(data: bytes, start: int, trace: Trace) -> tuple[str, int] | None:
    """Append the batches of the frames from ``start`` on; the damage that stopped it
    (problem, offset), or None at the clean end of the segment."""
    for item in iter_frames(data, start):
        if isinstance(item, Frame):
            try:
                trace.batches.append(decode_batch(item.payload))
                continue
            except WireError as exc:
                return f"undecodable batch ({exc})", item.offset
        return item.problem, item.offset
    return None


def last_stored_seqs(trace_dir: Path, run_id: str) -> dict[tuple[int, int], int]:
    """The highest batch ``seq`` the trace holds per (pid, rank) of ``run_id``, so a
    sidecar continuing it counts the batches lost in between. Only batch headers are
    decoded; anything that is not a whole frame with a header ends its segment."""
    last: dict[tuple[int, int], int] = {}
    for segment in TraceDir(trace_dir).segments():
        try:
            data = segment.read_bytes()
        except OSError:
            continue
        if not is_segment(data):
            continue
        for item in iter_frames(data, len(SEGMENT_MAGIC), verify_crc=False):
            if not isinstance(item, Frame):
                break
            try:
                header = decode_batch_header(item.payload)
            except WireError:
                break
            if header.run_id == run_id:
                key = (header.pid, header.rank)
                last[key] = max(last.get(key, -1), header.seq)
    return last
