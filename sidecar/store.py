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
from collections.abc import Callable, Iterable, Iterator
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
)
from traincheck.sidecar.segment_reader import Damage, NotASegmentError, SegmentReader
from traincheck.tracedir import TraceDir
from traincheck.wire import MAX_MESSAGE_BYTES, WireError, decode_batch, decode_batch_header

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
    which). It holds every batch in memory: tools that read a trace once, in order
    (``traincheck-check``, ``traincheck-infer``) use :func:`open_trace` instead."""

    path: Path
    manifest: RunManifest | None
    batches: list[Batch] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def events(self) -> Iterator[StoredEvent]:
        """All events, in the order the sidecar received them."""
        return _events_of(self.batches)

    def to_frame(self) -> pd.DataFrame:
        """Load the whole trace into one pandas DataFrame (one row per event)."""
        from traincheck.sidecar.frame import batches_to_frame

        return batches_to_frame(self.batches)


class TraceStream:
    """A trace on disk, read as it is iterated: one segment window and one batch in
    memory at a time, however long the trace (:mod:`traincheck.sidecar.segment_reader`).

    ``warnings`` holds the manifest's warning from the start, and each damaged
    place of the segments once the pass over the segments has reached it;
    ``on_warning`` hears each as it is added. Every pass reads the files again."""

    def __init__(
        self,
        trace_dir: TraceDir,
        manifest: RunManifest | None,
        warnings: list[str],
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.path = trace_dir.root
        self.manifest = manifest
        self._dir = trace_dir
        self._manifest_warnings = list(warnings)
        self.warnings = list(warnings)
        self._on_warning = on_warning
        self.batches_read = 0
        """Batches read so far in this pass."""

    def batches(self) -> Iterator[Batch]:
        """All intact batches, in the order they were stored."""
        self.warnings = list(self._manifest_warnings)
        self.batches_read = 0
        for segment in self._dir.segments():
            yield from self._segment_batches(segment)

    def events(self) -> Iterator[StoredEvent]:
        """All events, in the order the sidecar received them."""
        return _events_of(self.batches())

    def _warn(self, warning: str) -> None:
        self.warnings.append(warning)
        if self._on_warning is not None:
            self._on_warning(warning)

    def _segment_batches(self, segment: Path) -> Iterator[Batch]:
        try:
            reader = SegmentReader(
                segment,
                lambda damage: self._warn(self._damage_text(segment, damage)),
                max_payload_bytes=MAX_MESSAGE_BYTES,
            )
        except NotASegmentError:
            self._warn(f"{segment.name}: not a trace segment; skipped")
            return
        except OSError as exc:
            self._warn(f"{segment.name}: unreadable ({exc.strerror}); skipped")
            return
        with reader:
            for frame in reader.frames():
                try:
                    batch = decode_batch(frame.payload)
                except WireError as exc:
                    reader.reject(frame, f"undecodable batch ({exc})")
                    continue
                self.batches_read += 1
                yield batch

    def _damage_text(self, segment: Path, damage: Damage) -> str:
        where = f"{segment.name}: {damage.problem} at byte {damage.offset}"
        if damage.resume is None:
            return (
                f"{where}; kept the {self.batches_read} batches read so far, "
                f"ignored {damage.skipped_bytes} bytes"
            )
        return (
            f"{where}; skipped {damage.skipped_bytes} bytes, resumed at the next intact "
            f"frame (byte {damage.resume})"
        )


def _events_of(batches: Iterable[Batch]) -> Iterator[StoredEvent]:
    for batch in batches:
        for event in single_events(batch.events):
            yield StoredEvent(batch.pid, batch.rank, event)


def open_trace(path: str | Path, *, on_warning: Callable[[str], None] | None = None) -> TraceStream:
    """Open a trace directory written by the sidecar, to be read as a stream.

    Raises :class:`NotATraceError` when ``path`` is missing or holds no trace, at
    once, before any segment is read. Damage (a torn last frame, a bad checksum, an
    unreadable manifest) never raises: it is skipped, and ``warnings`` (and
    ``on_warning``) say what was."""
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
    warnings = [] if warning is None else [warning]
    if on_warning is not None:
        for text in warnings:
            on_warning(text)
    return TraceStream(trace_dir, manifest, warnings, on_warning)


def read_trace(path: str | Path) -> Trace:
    """Read a whole trace directory into memory (see :func:`open_trace` for what it
    raises and how damage is reported)."""
    stream = open_trace(path)
    batches = list(stream.batches())
    return Trace(
        path=stream.path, manifest=stream.manifest, batches=batches, warnings=stream.warnings
    )


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
