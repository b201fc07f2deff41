"""The one segment codec: frames written by the store, read a window at a time, tailed,
scanned."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traincheck.events import SCHEMA_VERSION, Batch, MetaChange
from traincheck.sidecar import segment_reader
from traincheck.sidecar.segment_codec import (
    CHECKSUM_MISMATCH,
    FRAME_HEADER,
    SEGMENT_MAGIC,
    TRUNCATED_FRAME,
    TRUNCATED_HEADER,
    Frame,
    FrameStop,
    SegmentTail,
    encode_frame,
    is_segment,
    iter_frames,
)
from traincheck.sidecar.segment_reader import (
    OVERSIZED_FRAME,
    READ_CHUNK_BYTES,
    Damage,
    NotASegmentError,
    SegmentReader,
)
from traincheck.sidecar.store import TraceWriter, last_stored_seqs
from traincheck.wire import encode_batch


def _batch(seq: int, *, pid: int = 7, run_id: str = "run") -> bytes:
    event = MetaChange(ts_ns=seq, thread=1, key="k", value=seq, step=seq, stage="train")
    return encode_batch(Batch(SCHEMA_VERSION, run_id, pid, 0, seq, 0, [event]))


def _segment(*payloads: bytes) -> bytes:
    return SEGMENT_MAGIC + b"".join(encode_frame(p) for p in payloads)


def test_a_whole_segment_reads_back_frame_by_frame() -> None:
    payloads = [b"a", b"", b"ccc" * 100]
    data = _segment(*payloads)
    assert is_segment(data) and not is_segment(b"TCSEG")
    frames = list(iter_frames(data, len(SEGMENT_MAGIC)))
    assert [bytes(f.payload) for f in frames] == payloads
    assert all(isinstance(f, Frame) for f in frames)
    assert frames[0].offset == len(SEGMENT_MAGIC) and frames[-1].end == len(data)
    assert [frames[i].end for i in range(2)] == [frames[i + 1].offset for i in range(2)]


def test_a_torn_last_frame_stops_the_read_and_says_where() -> None:
    data = _segment(b"one", b"two")
    second = len(SEGMENT_MAGIC) + FRAME_HEADER.size + 3
    *frames, stop = iter_frames(data[:-1], len(SEGMENT_MAGIC))
    assert [bytes(f.payload) for f in frames] == [b"one"]
    assert stop == FrameStop(TRUNCATED_FRAME, second) and stop.torn
    *_, stop = iter_frames(data[: second + 3], len(SEGMENT_MAGIC))
    assert stop == FrameStop(TRUNCATED_HEADER, second) and stop.torn


def test_a_bad_checksum_is_damage_unless_not_verified() -> None:
    data = bytearray(_segment(b"one", b"two"))
    data[len(SEGMENT_MAGIC) + FRAME_HEADER.size] ^= 0xFF
    (stop,) = iter_frames(bytes(data), len(SEGMENT_MAGIC))
    assert stop == FrameStop(CHECKSUM_MISMATCH, len(SEGMENT_MAGIC)) and not stop.torn
    unverified = list(iter_frames(bytes(data), len(SEGMENT_MAGIC), verify_crc=False))
    assert [bytes(f.payload) for f in unverified] == [b"\x90ne", b"two"]


def test_the_tail_waits_for_frames_being_written(tmp_path: Path) -> None:
    path = tmp_path / "segment-00000.tcs"
    data = _segment(b"one", b"two", b"three")
    tail = SegmentTail(path)
    written = 0
    seen: list[bytes] = []
    for cut in (3, len(SEGMENT_MAGIC), len(SEGMENT_MAGIC) + 5, len(data) - 2, len(data)):
        with path.open("ab") as handle:
            handle.write(data[written:cut])
        written = cut
        seen += [bytes(f.payload) for f in tail.read_new()]
        assert tail.damage is None
    assert seen == [b"one", b"two", b"three"] and tail.offset == len(data)
    assert list(tail.read_new()) == []


def test_the_tail_reports_damage_once_with_the_file_offset(tmp_path: Path) -> None:
    path = tmp_path / "segment-00000.tcs"
    good = _segment(b"one")
    bad = bytearray(encode_frame(b"two"))
    bad[-1] ^= 0xFF
    path.write_bytes(good)
    tail = SegmentTail(path)
    assert [bytes(f.payload) for f in tail.read_new()] == [b"one"]
    with path.open("ab") as handle:
        handle.write(bytes(bad) + encode_frame(b"three"))
    assert list(tail.read_new()) == []
    assert tail.damage == f"segment-00000.tcs: checksum mismatch at byte {len(good)}"
    assert list(tail.read_new()) == []


def test_the_tail_refuses_a_foreign_file_and_takes_the_callers_verdict(tmp_path: Path) -> None:
    foreign = SegmentTail(tmp_path / "segment-00001.tcs")
    foreign.path.write_bytes(b"not a segment at all")
    assert list(foreign.read_new()) == []
    assert foreign.damage == "segment-00001.tcs: not a trace segment; skipped"
    missing = SegmentTail(tmp_path / "segment-00002.tcs")
    assert list(missing.read_new()) == [] and "unreadable" in (missing.damage or "")
    path = tmp_path / "segment-00003.tcs"
    path.write_bytes(_segment(b"garbage", b"more"))
    tail = SegmentTail(path)
    for _frame in tail.read_new():
        tail.damaged("undecodable batch (x)")
        break
    assert tail.damage == "segment-00003.tcs: undecodable batch (x)"


def test_last_stored_seqs_scans_headers_of_whole_frames(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path, segment_max_bytes=300)
    for seq in range(5):
        writer.append(_batch(seq))
    writer.append(_batch(9, pid=8))
    writer.append(_batch(50, run_id="other-run"))
    writer.close()
    assert last_stored_seqs(tmp_path, "run") == {(7, 0): 4, (8, 0): 9}
    last = max(tmp_path.glob("segment-*.tcs"))
    last.write_bytes(last.read_bytes() + encode_frame(_batch(99))[:-3])  # torn: not counted
    assert last_stored_seqs(tmp_path, "run") == {(7, 0): 4, (8, 0): 9}


def _read(path: Path, chunk_bytes: int) -> tuple[list[tuple[int, bytes]], list[Damage]]:
    damage: list[Damage] = []
    with SegmentReader(
        path, damage.append, max_payload_bytes=1 << 20, chunk_bytes=chunk_bytes
    ) as r:
        frames = [(f.offset, bytes(f.payload)) for f in r.frames()]
    return frames, damage


_DAMAGE = st.sampled_from(["flip", "length", "truncate", "garbage"])


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=12),
    damages=st.lists(st.tuples(_DAMAGE, st.integers(0, 10**6)), max_size=3),
    chunk=st.integers(1, 400),
)
def test_a_small_window_reads_what_a_whole_file_read_does(
    tmp_path: Path, sizes: list[int], damages: list[tuple[str, int]], chunk: int
) -> None:
    """Frames split across windows, frames larger than a window, and resynchronisation
    after damage give the same frames and the same damage reports as reading the file
    whole (a window larger than the file)."""
    data = bytearray(_segment(*(_batch(seq) + b"x" * size for seq, size in enumerate(sizes))))
    for kind, where in damages:
        if len(data) <= len(SEGMENT_MAGIC):
            break
        at = len(SEGMENT_MAGIC) + where % (len(data) - len(SEGMENT_MAGIC))
        if kind == "flip":
            data[at] ^= 0xFF
        elif kind == "length":
            data[at : at + 4] = (2**31).to_bytes(4, "little")[: len(data) - at]
        elif kind == "truncate":
            del data[at:]
        else:
            data[at:at] = b"\x97garbage"
    path = tmp_path / "segment-00000.tcs"
    path.write_bytes(bytes(data))
    whole = _read(path, len(data) + 1)
    assert _read(path, chunk) == whole
    if not damages:
        assert [len(p) for _, p in whole[0]] == [len(_batch(s)) + n for s, n in enumerate(sizes)]


@pytest.mark.parametrize("damage", ["none", "flip", "length", "garbage"])
def test_every_window_size_reads_what_a_whole_file_read_does(tmp_path: Path, damage: str) -> None:
    """Every window size from one byte up, so that every frame and every resumption
    point falls on a window boundary once."""
    data = bytearray(_segment(*(_batch(seq) + b"x" * 3 * seq for seq in range(5))))
    second = len(SEGMENT_MAGIC) + FRAME_HEADER.size + len(_batch(0))
    if damage == "flip":
        data[second + FRAME_HEADER.size + 2] ^= 0xFF
    elif damage == "length":
        data[second : second + 4] = (2**31).to_bytes(4, "little")
    elif damage == "garbage":
        data[second:second] = b"\x97\x00\x01garbage"
    path = tmp_path / "segment-00000.tcs"
    path.write_bytes(bytes(data))
    whole = _read(path, len(data))
    assert len(whole[0]) == (4 if damage in ("flip", "length") else 5)
    assert len(whole[1]) == (0 if damage == "none" else 1)
    for chunk in range(1, len(data)):
        assert _read(path, chunk) == whole, chunk


def test_a_rejected_frame_is_damage_and_reading_resumes_after_it(tmp_path: Path) -> None:
    path = tmp_path / "segment-00000.tcs"
    path.write_bytes(_segment(_batch(0), _batch(1), _batch(2)))
    damage: list[Damage] = []
    kept = []
    with SegmentReader(path, damage.append, max_payload_bytes=1 << 20, chunk_bytes=20) as reader:
        for frame in reader.frames():
            if frame.offset == len(SEGMENT_MAGIC):
                reader.reject(frame, "undecodable batch (x)")
                continue
            kept.append(bytes(frame.payload))
    assert kept == [_batch(1), _batch(2)]
    (one,) = damage
    assert one.problem == "undecodable batch (x)" and one.offset == len(SEGMENT_MAGIC)
    assert one.resume == len(SEGMENT_MAGIC) + FRAME_HEADER.size + len(_batch(0))


def test_a_frame_longer_than_any_batch_is_damage_and_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A header claiming 80 MiB inside a 96 MiB (sparse) segment is damage: it is never
    read into memory whole; the search for the next frame reads a chunk at a time."""
    bytes_read = _count_reads(monkeypatch)
    path = tmp_path / "segment-00000.tcs"
    with path.open("wb") as handle:
        handle.write(SEGMENT_MAGIC + FRAME_HEADER.pack(80 << 20, 0) + _batch(0))
        handle.truncate(96 << 20)
    damage: list[Damage] = []
    with SegmentReader(path, damage.append, max_payload_bytes=64 << 20) as reader:
        assert list(reader.frames()) == []
    assert damage == [Damage(OVERSIZED_FRAME, len(SEGMENT_MAGIC), None, 96 << 20)]
    assert bytes_read and max(bytes_read) <= READ_CHUNK_BYTES


def test_a_foreign_file_is_refused_after_reading_its_magic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bytes_read = _count_reads(monkeypatch)
    path = tmp_path / "segment-00000.tcs"
    with path.open("wb") as handle:
        handle.write(b"TCSEG0\n")
        handle.truncate(1 << 30)
    with pytest.raises(NotASegmentError):
        SegmentReader(path, lambda damage: None, max_payload_bytes=64 << 20)
    assert bytes_read == [len(SEGMENT_MAGIC)]


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every read the segment reader makes from now on."""
    sizes: list[int] = []
    real_pread = os.pread

    def pread(fd: int, size: int, offset: int) -> bytes:
        data = real_pread(fd, size, offset)
        sizes.append(len(data))
        return data

    monkeypatch.setattr(segment_reader.os, "pread", pread)
    return sizes
