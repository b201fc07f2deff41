"""Trace store: round trip, rotation, and recovery from damage with warnings."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from tracegen import manifest

from traincheck import records
from traincheck.errors import NotATraceError
from traincheck.events import SCHEMA_VERSION, Batch, MetaChange, RunEnd
from traincheck.sidecar import store
from traincheck.sidecar.segment_codec import SEGMENT_MAGIC
from traincheck.sidecar.store import TraceWriter, read_trace
from traincheck.tracedir import TraceDir
from traincheck.wire import encode_batch


def make_batch(seq: int, *, pid: int = 100, events: int = 2) -> bytes:
    evs = [
        MetaChange(ts_ns=seq * 10 + i, thread=1, key="k", value=i, step=seq, stage="train")
        for i in range(events)
    ]
    return encode_batch(Batch(SCHEMA_VERSION, "run", pid, 0, seq, 0, evs))


def write_trace(tmp_path: Path, count: int, **kwargs: int) -> TraceWriter:
    TraceDir(tmp_path).write_manifest(manifest(run_id="run"))
    writer = TraceWriter(tmp_path, **kwargs)
    for seq in range(count):
        assert writer.append(make_batch(seq))
    writer.close()
    return writer


def test_round_trip_keeps_order_and_manifest(tmp_path: Path) -> None:
    write_trace(tmp_path, 5)
    trace = read_trace(tmp_path)
    assert trace.warnings == []
    assert [b.seq for b in trace.batches] == [0, 1, 2, 3, 4]
    assert trace.manifest is not None and trace.manifest.run_id == "run"
    assert trace.manifest.format == records.MANIFEST_FORMAT
    assert len(list(trace.events())) == 10
    assert (tmp_path / "segment-00000.tcs").stat().st_mode & 0o777 == 0o600


def test_segments_rotate_and_read_in_order(tmp_path: Path) -> None:
    write_trace(tmp_path, 10, segment_max_bytes=200)
    assert len(list(tmp_path.glob("segment-*.tcs"))) > 2
    assert [b.seq for b in read_trace(tmp_path).batches] == list(range(10))


def test_truncated_last_frame_keeps_everything_before(tmp_path: Path) -> None:
    write_trace(tmp_path, 4)
    segment = tmp_path / "segment-00000.tcs"
    data = segment.read_bytes()
    segment.write_bytes(data[:-5])
    trace = read_trace(tmp_path)
    assert [b.seq for b in trace.batches] == [0, 1, 2]
    assert len(trace.warnings) == 1 and "truncated frame" in trace.warnings[0]


def test_truncated_header_is_reported(tmp_path: Path) -> None:
    write_trace(tmp_path, 2)
    segment = tmp_path / "segment-00000.tcs"
    with segment.open("ab") as f:
        f.write(b"\x01\x02")
    trace = read_trace(tmp_path)
    assert len(trace.batches) == 2
    assert "truncated frame header" in trace.warnings[0]


def test_corrupt_frame_stops_that_segment_only(tmp_path: Path) -> None:
    write_trace(tmp_path, 6, segment_max_bytes=200)
    first = tmp_path / "segment-00000.tcs"
    data = bytearray(first.read_bytes())
    data[len(SEGMENT_MAGIC) + 12] ^= 0xFF  # inside the first frame's payload
    first.write_bytes(bytes(data))
    trace = read_trace(tmp_path)
    assert "checksum mismatch" in trace.warnings[0]
    seqs = [b.seq for b in trace.batches]
    assert 0 not in seqs and seqs == sorted(seqs) and seqs[-1] == 5


def test_a_damaged_frame_costs_only_itself_the_reader_resumes_at_the_next(
    tmp_path: Path,
) -> None:
    """One bad header used to drop the rest of its segment (up to 256 MiB)."""
    write_trace(tmp_path, 6)
    (segment,) = sorted(tmp_path.glob("segment-*.tcs"))
    data = bytearray(segment.read_bytes())
    first_length = int.from_bytes(data[len(SEGMENT_MAGIC) : len(SEGMENT_MAGIC) + 4], "little")
    second = len(SEGMENT_MAGIC) + 8 + first_length
    data[second : second + 4] = (2**31).to_bytes(4, "little")  # a length past the end
    segment.write_bytes(bytes(data))
    trace = read_trace(tmp_path)
    assert [b.seq for b in trace.batches] == [0, 2, 3, 4, 5]
    (warning,) = trace.warnings
    assert f"at byte {second}" in warning and "resumed at the next intact frame" in warning


def test_foreign_segment_and_missing_manifest_are_warnings(tmp_path: Path) -> None:
    write_trace(tmp_path, 1)
    (tmp_path / "segment-00009.tcs").write_bytes(b"garbage")
    (tmp_path / "run.json").unlink()
    trace = read_trace(tmp_path)
    assert len(trace.batches) == 1
    assert any("missing" in w for w in trace.warnings)
    assert any("not a trace segment" in w for w in trace.warnings)


def test_unreadable_manifest_is_a_warning(tmp_path: Path) -> None:
    write_trace(tmp_path, 1)
    (tmp_path / "run.json").write_text("{not json")
    trace = read_trace(tmp_path)
    assert len(trace.batches) == 1 and "unreadable" in trace.warnings[0]


@pytest.mark.parametrize("make", ["missing", "file", "empty", "foreign"])
def test_not_a_trace(tmp_path: Path, make: str) -> None:
    target = tmp_path / "x"
    if make == "file":
        target.write_text("hi")
    elif make == "empty":
        target.mkdir()
    elif make == "foreign":
        target.mkdir()
        (target / "run.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(NotATraceError):
        read_trace(target)


def test_failed_partial_write_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk-full in the middle of a frame must not hide the batches after it."""
    writer = TraceWriter(tmp_path)
    assert writer.append(make_batch(0))
    real_write = os.write
    calls = {"n": 0}

    def half_then_enospc(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "write", half_then_enospc)
    assert not writer.append(make_batch(1))
    monkeypatch.setattr(store.os, "write", real_write)
    assert writer.append(make_batch(2))
    writer.close()
    assert writer.batches_lost == 1 and "No space left" in writer.write_errors[0]
    trace = read_trace(tmp_path)
    assert trace.warnings == ["run.json is missing; reading segments only"]
    assert [b.seq for b in trace.batches] == [0, 2]


def test_writer_never_reopens_an_existing_segment(tmp_path: Path) -> None:
    write_trace(tmp_path, 2)
    writer = TraceWriter(tmp_path)
    writer.append(make_batch(7))
    writer.close()
    assert (tmp_path / "segment-00001.tcs").exists()
    assert [b.seq for b in read_trace(tmp_path).batches] == [0, 1, 7]


def test_manifest_write_is_atomic_and_versioned(tmp_path: Path) -> None:
    TraceDir(tmp_path).write_manifest(manifest(status="running"))
    TraceDir(tmp_path).write_manifest(manifest(status="finished"))
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["status"] == "finished" and data["format_version"] == records.MANIFEST_VERSION
    assert not list(tmp_path.glob(".*tmp"))


def test_run_end_event_round_trips(tmp_path: Path) -> None:
    batch = Batch(SCHEMA_VERSION, "run", 1, 0, 0, 3, [RunEnd(1, 2, 3, 4, "exit")])
    writer = TraceWriter(tmp_path)
    writer.append(encode_batch(batch))
    writer.close()
    assert read_trace(tmp_path).batches == [batch]


def test_open_trace_streams_and_says_each_warning_once_per_pass(tmp_path: Path) -> None:
    write_trace(tmp_path, 6, segment_max_bytes=200)
    (tmp_path / "segment-00099.tcs").write_bytes(b"garbage")
    (tmp_path / "run.json").unlink()
    heard: list[str] = []
    stream = store.open_trace(tmp_path, on_warning=heard.append)
    assert len(heard) == 1 and "run.json is missing" in heard[0]  # said at once
    batches = stream.batches()
    assert next(batches).seq == 0 and len(heard) == 1  # segments are read as asked for
    assert [b.seq for b in batches] == [1, 2, 3, 4, 5]
    assert stream.warnings == heard and "not a trace segment" in heard[-1]
    assert len(list(stream.events())) == 12
    assert stream.warnings == heard[:2], "a second pass reports its own warnings, once"
