"""The segment file format, written and parsed in one place.

A segment starts with :data:`SEGMENT_MAGIC`; then frames, back to back::

    <u32 length><u32 crc32>   little endian, of the payload
    <payload>                 one msgpack-encoded Batch (traincheck/wire.py)

The store appends whole frames (:func:`encode_frame`) with one ``write`` each, so a
reader can meet at most one frame that is not whole: the last one, torn by a
crash or still being written. Everything that reads segments goes through
:func:`iter_frames`; they differ only in what they make of where it stopped:

* ``read_trace``/``open_trace`` read a finished segment a window at a time
  (:mod:`traincheck.sidecar.segment_reader`): a torn frame is damage (a warning),
  and reading resumes at the next intact frame.
* ``traincheck-check --follow`` tails a growing segment (:class:`SegmentTail`):
  a torn frame is one not written yet, waited for.
* ``traincheck-attach`` scans for the last batch stored per process, reading only
  batch headers and never the checksums (it never did; the damage policy of all
  three is to be revisited as a whole).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

SEGMENT_MAGIC = b"TCSEG1\n"
FRAME_HEADER = struct.Struct("<II")
"""Payload length and CRC-32, both little-endian u32."""

TRUNCATED_HEADER = "truncated frame header"
TRUNCATED_FRAME = "truncated frame"
CHECKSUM_MISMATCH = "checksum mismatch"


class Frame(NamedTuple):
    """One whole frame: where it starts in its segment, and its payload."""

    offset: int
    payload: memoryview

    @property
    def end(self) -> int:
        """The offset just past the frame (where the next one starts)."""
        return self.offset + FRAME_HEADER.size + len(self.payload)


class FrameStop(NamedTuple):
    """Why reading stopped before the end of the data, and at which offset."""

    problem: str
    offset: int

    @property
    def torn(self) -> bool:
        """The frame is not whole (yet): the data ends inside it."""
        return self.problem in (TRUNCATED_HEADER, TRUNCATED_FRAME)


def encode_frame(payload: bytes | memoryview) -> bytes:
    """A frame ready to append: header and payload in one buffer (one ``write``)."""
    return FRAME_HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def is_segment(data: bytes | memoryview) -> bool:
    return bytes(data[: len(SEGMENT_MAGIC)]) == SEGMENT_MAGIC


def iter_frames(
    data: bytes | memoryview, start: int, *, base: int = 0, verify_crc: bool = True
) -> Iterator[Frame | FrameStop]:
    """The frames of ``data`` from ``start`` on, then a :class:`FrameStop` if the data
    does not end exactly after a whole (and, with ``verify_crc``, intact) frame.

    Offsets are reported as ``base`` + the position in ``data``, so a reader that
    holds only the tail of a segment still names file offsets. Payloads are views of
    ``data``, not copies."""
    view = memoryview(data)
    size = len(view)
    offset = start
    while offset < size:
        if offset + FRAME_HEADER.size > size:
            yield FrameStop(TRUNCATED_HEADER, base + offset)
            return
        length, crc = FRAME_HEADER.unpack_from(view, offset)
        begin = offset + FRAME_HEADER.size
        if begin + length > size:
            yield FrameStop(TRUNCATED_FRAME, base + offset)
            return
        payload = view[begin : begin + length]
        if verify_crc and zlib.crc32(payload) != crc:
            yield FrameStop(CHECKSUM_MISMATCH, base + offset)
            return
        yield Frame(base + offset, payload)
        offset = begin + length


class SegmentTail:
    """The frames appended to one segment file since the last look.

    A frame not yet whole is left for the next look; damage (a foreign file, a
    checksum mismatch, or what the caller reports through :meth:`damaged`) ends
    the segment for good, and ``damage`` says why."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        """How far the segment has been read (a file offset)."""
        self.damage: str | None = None

    def read_new(self) -> Iterator[Frame]:
        if self.damage is not None:
            return
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError as exc:
            self.damaged(f"unreadable ({exc.strerror})")
            return
        origin, start = self.offset, 0
        if origin == 0:
            if len(data) < len(SEGMENT_MAGIC):
                return  # the magic itself is still being written
            if not is_segment(data):
                self.damaged("not a trace segment; skipped")
                return
            start = self.offset = len(SEGMENT_MAGIC)
        for item in iter_frames(data, start, base=origin):
            if isinstance(item, FrameStop):
                if not item.torn:
                    self.damaged(f"{item.problem} at byte {item.offset}")
                return
            self.offset = item.end
            yield item

    def damaged(self, reason: str) -> None:
        """Stop reading this segment; ``reason`` is said with the segment's name."""
        self.damage = f"{self.path.name}: {reason}"
