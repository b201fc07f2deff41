"""The one segment codec: frames written by the store, read whole, tailed, scanned."""

from __future__ import annotations

from pathlib import Path

from traincheck.events import SCHEMA_VERSION, Batch, MetaChange
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
