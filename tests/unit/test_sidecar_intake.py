"""The sidecar's intake path, made faster without changing what it accepts or counts.

* ``decode_batch`` decodes the whole batch first and reads the bare header only to
  explain a failure: every verdict and reason is the one the header-first order gave.
* It pauses the cyclic GC while decoding, and leaves the collector as it found it.
* The ledger skips its per-event loop unless a batch holds a run marker, wherever
  in the batch the marker is.
* Without invariants no ``StoredEvent`` is built; with a checker every event is fed,
  in order, from a thread that follows the store: a stuck or slow check costs
  storage nothing and catches up from the segments (``check_follower.py``).
* The receiver hands out views of ZeroMQ's buffers, which validate and store as bytes do.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import threading
from pathlib import Path

import msgspec
import pytest
import zmq

from traincheck.events import SCHEMA_VERSION, Batch, MetaChange, RunEnd, RunStart, StoredEvent
from traincheck.sidecar import check_follower, store
from traincheck.sidecar.receiver import IntakeLedger, Receiver
from traincheck.sidecar.service import Sidecar, SidecarOptions
from traincheck.sidecar.store import TraceWriter, read_trace
from traincheck.tracedir import TraceDir
from traincheck.wire import WireError, decode_batch, encode_batch

RUN = "run-1"


def _meta(i: int) -> MetaChange:
    return MetaChange(i, 1, "step", i, i, "train")


def _run_start(pid: int) -> RunStart:
    return RunStart(0, 0, pid, 1, 0, 0, 1, os.uname().nodename, ["x"], "3", "")


def _encoded(seq: int = 0, events: list | None = None, *, run_id: str = RUN) -> bytes:
    events = [_meta(seq)] if events is None else events
    return encode_batch(Batch(SCHEMA_VERSION, run_id, 7, 0, seq, 0, events))


def _reason(data: bytes, run_id: str | None = RUN) -> str:
    with pytest.raises(WireError) as info:
        decode_batch(data, expected_run_id=run_id)
    return str(info.value)


def test_reasons_are_the_header_ones_even_when_the_body_does_not_decode() -> None:
    bad_body = [SCHEMA_VERSION, RUN, 7, 0, 0, 0, [["no-such-tag", 1]]]
    assert _reason(msgspec.msgpack.encode(bad_body)).startswith("malformed batch: ")
    other_version = [SCHEMA_VERSION + 1, RUN, 7, 0, 0, 0, [["no-such-tag", 1]]]
    assert "schema version" in _reason(msgspec.msgpack.encode(other_version))
    other_run = [SCHEMA_VERSION, "other", 7, 0, 0, 0, [["no-such-tag", 1]]]
    assert "expected 'run-1'" in _reason(msgspec.msgpack.encode(other_run))
    assert "expected 'run-1'" in _reason(_encoded(run_id="other"))  # body valid too
    assert _reason(b"\x00garbage").startswith("not a traincheck batch: ")
    assert _reason(msgspec.msgpack.encode({"a": 1})).startswith("not a traincheck batch: ")


def test_a_valid_batch_decodes_from_bytes_and_from_a_view() -> None:
    data = _encoded(3, [_meta(1), _meta(2)])
    for message in (data, memoryview(data)):
        batch = decode_batch(message, expected_run_id=RUN)
        assert batch.seq == 3 and batch.events == [_meta(1), _meta(2)]


@pytest.mark.parametrize("collecting", [True, False])
def test_decoding_leaves_the_collector_as_it_found_it(collecting: bool) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if collecting else gc.disable()
        decode_batch(_encoded())
        assert gc.isenabled() is collecting
        for bad in (b"\x00", msgspec.msgpack.encode([SCHEMA_VERSION, RUN, 7, 0, 0, 0, [1]])):
            with pytest.raises(WireError):
                decode_batch(bad)
            assert gc.isenabled() is collecting
    finally:
        gc.enable() if was else gc.disable()


def test_run_markers_are_found_anywhere_in_a_batch() -> None:
    ledger = IntakeLedger()
    ledger.record_batch(Batch(SCHEMA_VERSION, RUN, 7, 0, 0, 0, [_meta(0), _run_start(7), _meta(1)]))
    producer = ledger.producers[7]
    assert producer.run_start and producer.host == os.uname().nodename and not producer.run_end
    ledger.record_batch(Batch(SCHEMA_VERSION, RUN, 7, 0, 1, 0, [_meta(2)]))
    assert not producer.run_end and producer.events == 4
    end = RunEnd(9, 10, 3, 1, "exit")
    ledger.record_batch(Batch(SCHEMA_VERSION, RUN, 7, 0, 2, 0, [end, _meta(3)]))
    assert producer.run_end and producer.end_reason == "exit"
    assert producer.events_dropped == 3 and producer.batches_dropped == 1


@pytest.fixture
def sidecar(tmp_path: Path) -> Sidecar:
    (tmp_path / "s").mkdir(mode=0o700)
    options = SidecarOptions(
        trace_dir=tmp_path / "trace", endpoint=f"ipc://{tmp_path}/s/events.sock", run_id=RUN
    )
    options.trace_dir.mkdir()
    return Sidecar(options)


def test_without_invariants_no_stored_event_is_built(
    sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: object) -> StoredEvent:
        raise AssertionError("a StoredEvent was built with nothing to check")

    monkeypatch.setattr(check_follower, "StoredEvent", refuse)
    assert not sidecar.check.active and sidecar.follower is None  # no checker thread
    sidecar.handle(_encoded(0, [_meta(0), _meta(1)]))
    sidecar.handle(b"\x00garbage")
    summary = sidecar.finish()
    assert summary.events_received == 2 and summary.rejected == 1
    assert [b.seq for b in read_trace(sidecar.options.trace_dir).batches] == [0]


class _RecordingCheck:
    """Stands in for a ``LiveCheck`` with invariants: records what it is fed, and
    blocks in ``feed`` until ``gate`` opens (a check slower than anything)."""

    active = True
    violations = 0
    errors = 0
    outcomes = None

    def __init__(self, *, open_gate: bool = True) -> None:
        self.fed: list[StoredEvent] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        if open_gate:
            self.gate.set()

    def feed(self, stored: StoredEvent) -> None:
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        self.fed.append(stored)

    def pump(self) -> None:
        pass

    def finish(self, manifest: object = None) -> None:
        pass


def _sidecar_checked_by(tmp_path: Path, check: _RecordingCheck, **kwargs: int) -> Sidecar:
    (tmp_path / "s").mkdir(mode=0o700)
    options = SidecarOptions(
        trace_dir=tmp_path / "trace", endpoint=f"ipc://{tmp_path}/s/events.sock", run_id=RUN
    )
    options.trace_dir.mkdir()
    return Sidecar(options, check, **kwargs)  # type: ignore[arg-type]


def test_with_a_checker_every_valid_event_is_fed_in_order(tmp_path: Path) -> None:
    check = _RecordingCheck()
    sidecar = _sidecar_checked_by(tmp_path, check)
    sidecar.handle(_encoded(0, [_meta(0), _meta(1)]))
    sidecar.handle(_encoded(1, [_meta(2)], run_id="other"))  # rejected: not fed
    sidecar.handle(memoryview(_encoded(2, [_meta(3)])))
    summary = sidecar.finish()
    assert [(s.pid, s.rank, s.event) for s in check.fed] == [
        (7, 0, _meta(0)),
        (7, 0, _meta(1)),
        (7, 0, _meta(3)),
    ]
    assert summary.live_check is not None and summary.live_check.batches_checked == 2
    assert summary.live_check.batches_from_disk == 0  # it kept up: read from memory


def test_a_stuck_check_costs_storage_nothing_and_catches_up_from_disk(tmp_path: Path) -> None:
    """The check is blocked inside its first event while 300 batches arrive: every one
    is stored at once (the receiver never waits), and once the check is free it
    reads what it missed back from the segments -- across segment files -- and
    checks every event in the order received."""
    check = _RecordingCheck(open_gate=False)
    one_batch = len(_encoded(0))
    sidecar = _sidecar_checked_by(tmp_path, check, handoff_max_bytes=4 * one_batch)
    sidecar.writer = TraceWriter(sidecar.options.trace_dir, segment_max_bytes=50 * one_batch)
    sidecar.handle(_encoded(0))
    assert check.entered.wait(60), "the checker thread never started"
    for seq in range(1, 300):
        sidecar.handle(_encoded(seq))
    stored = read_trace(sidecar.options.trace_dir)
    assert [b.seq for b in stored.batches] == list(range(300))  # while the check is stuck
    assert len(TraceDir(sidecar.options.trace_dir).segments()) > 1
    assert check.fed == []
    check.gate.set()
    summary = sidecar.finish()
    assert [s.event for s in check.fed] == [_meta(seq) for seq in range(300)]
    lag = summary.live_check
    assert lag is not None and lag.batches_checked == 300 and not lag.pending
    assert lag.batches_from_disk > 250 and lag.most_behind_batches >= 299
    assert lag.events_unchecked == 0 and lag.read_errors == []
    assert summary.batches_written == 300 and summary.batches_lost == 0


def test_without_room_in_memory_every_batch_is_checked_from_disk(tmp_path: Path) -> None:
    check = _RecordingCheck()
    sidecar = _sidecar_checked_by(tmp_path, check, handoff_max_bytes=0)
    for seq in range(40):
        sidecar.handle(_encoded(seq, [_meta(seq), _meta(seq + 1000)]))
    summary = sidecar.finish()
    assert len(check.fed) == 80
    assert [s.event for s in check.fed[::2]] == [_meta(seq) for seq in range(40)]
    assert summary.live_check is not None and summary.live_check.batches_from_disk == 40


def test_batches_the_disk_refused_are_counted_said_once_and_still_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    check = _RecordingCheck()
    sidecar = _sidecar_checked_by(tmp_path, check)
    sidecar.handle(_encoded(0))
    real_write = store.os.write

    def disk_full(fd: int, data: bytes) -> int:
        if fd <= 2:  # the terminal is not on the full disk
            return real_write(fd, data)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "write", disk_full)
    for seq in range(1, 6):
        sidecar.handle(_encoded(seq, [_meta(seq), _meta(seq)]))
    monkeypatch.setattr(store.os, "write", real_write)
    sidecar.handle(_encoded(6))
    summary = sidecar.finish()
    assert summary.batches_lost == 5 and summary.events_lost == 10
    assert summary.batches_written == 2
    assert summary.write_errors == [f"No space left on device ({sidecar.options.trace_dir})"]
    assert len(check.fed) == 12  # held in memory: checked although never stored
    said = capfd.readouterr().err
    assert said.count("cannot save the trace") == 1, said
    assert (
        json.loads(TraceDir(sidecar.options.trace_dir).manifest.read_text())["counters"][
            "events_lost"
        ]
        == 10
    )


def test_receiver_hands_out_views_and_joins_multipart(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/r.sock"
    receiver = Receiver(endpoint)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    try:
        push.connect(endpoint)
        big = _encoded(0, [_meta(i) for i in range(5000)])
        push.send(big)
        push.send_multipart([b"ab", b"cd"])
        messages: list[memoryview] = []
        for _ in range(50):
            messages += receiver.receive(0.1)
            if len(messages) == 2:
                break
        assert [bytes(m) for m in messages] == [big, b"abcd"]
        assert all(isinstance(m, memoryview) for m in messages)
        assert len(decode_batch(messages[0], expected_run_id=RUN).events) == 5000
    finally:
        push.close(linger=0)
        context.term()
        receiver.close()


def test_on_a_full_disk_run_json_gets_the_space_reserved_for_it(
    sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk refuses run.json too; the sidecar gives up the space it reserved
    at the start and writes it (a real full tmpfs: test_faults.py)."""
    trace = sidecar.trace
    assert trace.manifest_reserve.stat().st_size > 0
    real_write = type(trace).write_manifest

    def full_unless_reserve_released(self: TraceDir, manifest: object) -> None:
        if self.manifest_reserve.exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, manifest)  # type: ignore[arg-type]

    monkeypatch.setattr(TraceDir, "write_manifest", full_unless_reserve_released)
    sidecar.handle(_encoded(0))
    summary = sidecar.finish()
    assert json.loads(trace.manifest.read_text())["status"] == "finished"
    assert summary.write_errors == [] and not trace.manifest_reserve.exists()
