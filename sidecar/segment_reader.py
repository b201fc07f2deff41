"""Read a finished segment file frame by frame, in memory bounded by its largest frame.

A segment may be 256 MiB (``SEGMENT_MAX_BYTES``) and a trace holds many; a reader
that loads them whole holds the trace twice (bytes, then decoded batches) before
the first event is checked. :class:`SegmentReader` holds a window of the file
instead: :data:`READ_CHUNK_BYTES`, or one frame when a frame is larger, so memory
does not grow with the segment. The 7-byte magic is checked before anything else
is read: a foreign or damaged file costs 7 bytes, whatever its size.

Damage never ends the segment: a frame whose header or payload is truncated,
whose checksum does not match, or that the caller cannot decode (:meth:`reject`)
costs only itself. The reader looks for the next intact frame (:meth:`_next_frame_at`)
and reports each damaged place once, through ``on_damage``, with where it resumed.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import NamedTuple

from traincheck.sidecar.segment_codec import (
    FRAME_HEADER,
    SEGMENT_MAGIC,
    TRUNCATED_FRAME,
    TRUNCATED_HEADER,
    Frame,
    FrameStop,
    iter_frames,
)

OVERSIZED_FRAME = "frame longer than any batch"

READ_CHUNK_BYTES = 1024 * 1024
"""Bytes read at a time. Batches are ~10 KB, so a chunk holds about a hundred frames."""

_BATCH_FIELDS = 7
"""A ``Batch`` is encoded as a msgpack array of its 7 fields (``traincheck.events``)."""
_BATCH_START = bytes([0x90 | _BATCH_FIELDS])
"""The first payload byte of every frame: msgpack's fixarray of 7 elements."""


class NotASegmentError(ValueError):
    """The file does not start with :data:`SEGMENT_MAGIC`."""


class Damage(NamedTuple):
    """A damaged place of a segment: what was wrong, where, and where reading resumed."""

    problem: str
    offset: int
    resume: int | None
    """The next intact frame's offset; None: none followed, the rest was ignored."""
    segment_bytes: int

    @property
    def skipped_bytes(self) -> int:
        return (self.segment_bytes if self.resume is None else self.resume) - self.offset


class SegmentReader:
    """The intact frames of one segment file, in order, read a window at a time.

    Opening checks the magic (raises :class:`NotASegmentError`, or ``OSError``);
    :meth:`frames` yields views of the window, valid until the next frame is asked
    for. An ``OSError`` while reading ends the segment and is reported as damage."""

    def __init__(
        self,
        path: Path,
        on_damage: Callable[[Damage], None],
        *,
        max_payload_bytes: int,
        chunk_bytes: int = READ_CHUNK_BYTES,
    ) -> None:
        """``max_payload_bytes``: no frame's payload is longer (the receiver takes no
        longer message), so a header that says more is damage, never read into memory."""
        self.path = path
        self._on_damage = on_damage
        self._max_payload = max_payload_bytes
        self._chunk = max(chunk_bytes, 2 * FRAME_HEADER.size)
        self._fd = os.open(path, os.O_RDONLY)
        try:
            if os.pread(self._fd, len(SEGMENT_MAGIC), 0) != SEGMENT_MAGIC:
                raise NotASegmentError(f"{path.name}: not a trace segment")
            self._size = os.fstat(self._fd).st_size
        except BaseException:
            os.close(self._fd)
            raise
        self._base = len(SEGMENT_MAGIC)
        """The file offset of ``_data[0]``."""
        self._data = b""
        self._rejected: FrameStop | None = None

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> SegmentReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reject(self, frame: Frame, problem: str) -> None:
        """The caller could not use ``frame`` (its payload does not decode): it is
        damage like a bad checksum, and reading resumes at the next intact frame."""
        self._rejected = FrameStop(problem, frame.offset)

    def frames(self) -> Iterator[Frame]:
        """Every intact frame, in order; each damaged place is reported once."""
        offset = len(SEGMENT_MAGIC)
        while offset < self._size:
            try:
                stop = yield from self._frames_from(offset)
                if stop is None:
                    return
                resume = self._next_frame_at(stop.offset)
            except OSError as exc:
                self._on_damage(Damage(f"unreadable ({exc.strerror})", offset, None, self._size))
                return
            self._on_damage(Damage(stop.problem, stop.offset, resume, self._size))
            if resume is None:
                return
            offset = resume

    def _frames_from(self, offset: int) -> Generator[Frame, None, FrameStop | None]:
        """The intact frames from ``offset`` on; the damage that stopped them, or None
        at the end of the file."""
        need = FRAME_HEADER.size
        while offset < self._size:
            self._hold(offset, need)
            need = FRAME_HEADER.size
            for item in iter_frames(self._data, offset - self._base, base=self._base):
                if isinstance(item, Frame):
                    yield item
                    rejected = self._take_rejection()
                    if rejected is not None:
                        return rejected
                    offset = item.end
                    continue
                if not item.torn or self._window_end >= self._size:
                    return item
                offset, need = item.offset, self._frame_bytes(item)
                if offset + need > self._size:
                    return FrameStop(TRUNCATED_FRAME, offset)
                if need - FRAME_HEADER.size > self._max_payload:
                    return FrameStop(OVERSIZED_FRAME, offset)
                break
        return None

    def _take_rejection(self) -> FrameStop | None:
        """What :meth:`reject` said about the frame just yielded (None: it was used)."""
        rejected, self._rejected = self._rejected, None
        return rejected

    @property
    def _window_end(self) -> int:
        return self._base + len(self._data)

    def _frame_bytes(self, stop: FrameStop) -> int:
        """How many bytes the frame torn at the window's end needs, header included."""
        if stop.problem == TRUNCATED_HEADER:
            return FRAME_HEADER.size
        length, _ = FRAME_HEADER.unpack_from(self._data, stop.offset - self._base)
        return int(FRAME_HEADER.size + length)

    def _hold(self, offset: int, need: int) -> None:
        """Move the window to start at ``offset`` and hold at least ``need`` bytes
        (a chunk, if larger), or up to the end of the file."""
        kept = b""
        if self._base <= offset < self._window_end:
            kept = self._data[offset - self._base :]
        want = min(max(need, self._chunk), self._size - offset)
        more = b""
        if len(kept) < want:
            at = offset + len(kept)
            more = _pread_all(self._fd, want - len(kept), at)
            if len(kept) + len(more) < want:
                self._size = at + len(more)  # the file shrank since it was opened
        self._data, self._base = kept + more, offset

    def _next_frame_at(self, start: int) -> int | None:
        """The offset of the first whole, intact frame after ``start``, or None.

        Candidates are screened cheaply before their checksum is computed: the
        length must fit in the file and the payload must start as every batch does
        (a 7-element msgpack array); only then is the CRC-32 compared, which makes a
        false match from garbage practically impossible."""
        search_at = start + 1 + FRAME_HEADER.size
        while search_at < self._size:
            self._hold(search_at - FRAME_HEADER.size, 0)
            found = self._data.find(_BATCH_START, FRAME_HEADER.size)
            while found != -1:
                length, crc = FRAME_HEADER.unpack_from(self._data, found - FRAME_HEADER.size)
                payload_at = self._base + found
                fits = length <= self._max_payload and payload_at + length <= self._size
                if fits and self._crc(payload_at, length) == crc:
                    return payload_at - FRAME_HEADER.size
                found = self._data.find(_BATCH_START, found + 1)
            search_at = self._window_end
        return None

    def _crc(self, offset: int, length: int) -> int | None:
        """The CRC-32 of the file's bytes at ``offset``, streamed past the window
        (a candidate's claimed length may be anything up to the file's size)."""
        if offset + length <= self._window_end:
            begin = offset - self._base
            return zlib.crc32(memoryview(self._data)[begin : begin + length])
        crc = 0
        while length > 0:
            piece = os.pread(self._fd, min(length, self._chunk), offset)
            if not piece:
                return None
            crc = zlib.crc32(piece, crc)
            offset += len(piece)
            length -= len(piece)
        return crc


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset``, fewer only at the end of the file."""
    pieces = []
    while size > 0:
        piece = os.pread(fd, size, offset)
        if not piece:
            break
        pieces.append(piece)
        offset += len(piece)
        size -= len(piece)
    return b"".join(pieces)
