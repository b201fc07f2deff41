"""The sidecar process on its own: real process, real PULL socket, real stdin/stdout."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from traincheck.events import SCHEMA_VERSION, Batch, MetaChange, RunEnd, RunStart
from traincheck.records import SidecarFailed, decode_sidecar_line
from traincheck.sidecar.store import read_trace
from traincheck.wire import encode_batch

RUN_ID = "test-run"
PID = 424242  # no such process here: a producer that ended without RunEnd is not waited for


class SidecarUnderTest:
    def __init__(self, tmp_path: Path, *extra: str) -> None:
        self.trace_dir = tmp_path / "trace"
        self.sock_dir = tmp_path / "s"
        self.sock_dir.mkdir(mode=0o700)
        self.endpoint = f"ipc://{self.sock_dir}/events.sock"
        self.command_file = self.sock_dir / "command.json"
        self.command_file.write_text(json.dumps(["python", "train.py"]))
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "traincheck.sidecar",
                "--trace-dir",
                str(self.trace_dir),
                "--endpoint",
                self.endpoint,
                "--run-id",
                RUN_ID,
                "--command-file",
                str(self.command_file),
                *extra,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.context = zmq.Context()
        self.push = self.context.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)

    def read_json(self, timeout_s: float = 15) -> dict:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        assert ready, "sidecar printed nothing in time"
        line = self.process.stdout.readline()
        assert line, f"sidecar exited: {self.stderr()}"
        return json.loads(line)

    def send(self, payload: bytes) -> None:
        self.push.send(payload, zmq.NOBLOCK)

    def drain(self) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.write(b"drain\n")
        self.process.stdin.flush()
        summary = self.read_json()
        assert self.process.wait(timeout=15) == 0
        return summary

    def stderr(self) -> str:
        if self.process.poll() is None:
            return ""
        assert self.process.stderr is not None
        return self.process.stderr.read().decode()

    def close(self) -> None:
        self.push.close(linger=0)
        self.context.term()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[SidecarUnderTest]:
    under_test = SidecarUnderTest(tmp_path)
    try:
        ready = under_test.read_json()
        assert ready["event"] == "ready" and ready["endpoint"] == under_test.endpoint
        assert ready["pid"] == under_test.process.pid
        under_test.push.connect(under_test.endpoint)
        yield under_test
    finally:
        under_test.close()


def batch(seq: int, events: list, *, run_id: str = RUN_ID, dropped: int = 0) -> bytes:
    return encode_batch(Batch(SCHEMA_VERSION, run_id, PID, 0, seq, dropped, events))


def start_event() -> RunStart:
    return RunStart(1, 2, PID, 1, 0, 0, 1, socket.gethostname(), ["t.py"], "3", "none")


def meta(i: int) -> MetaChange:
    return MetaChange(i, 1, "step", i, i, "train")


def test_ready_means_manifest_and_private_socket(sidecar: SidecarUnderTest) -> None:
    manifest = json.loads((sidecar.trace_dir / "run.json").read_text())
    assert manifest["status"] == "running" and manifest["run_id"] == RUN_ID
    assert manifest["command"] == ["python", "train.py"]
    assert manifest["sidecar_pid"] == sidecar.process.pid
    sock_mode = (sidecar.sock_dir / "events.sock").stat().st_mode
    assert stat.S_ISSOCK(sock_mode) and stat.S_IMODE(sock_mode) & 0o077 == 0
    sidecar.drain()
    assert not (sidecar.sock_dir / "events.sock").exists()


def test_counts_gaps_drops_rejects_and_stores_valid_batches(sidecar: SidecarUnderTest) -> None:
    sidecar.send(batch(0, [start_event()]))
    sidecar.send(b"\x00garbage")
    sidecar.send(batch(1, [meta(1), meta(2)], run_id="another-run"))
    sidecar.send(batch(1, [meta(1), meta(2)]))
    sidecar.send(batch(4, [meta(3)], dropped=7))  # seq 2 and 3 never arrive
    sidecar.send(batch(5, [RunEnd(9, 10, 9, 2, "exit")]))
    summary = sidecar.drain()
    assert summary["event"] == "summary" and summary["status"] == "finished"
    assert summary["batches_received"] == 4 and summary["events_received"] == 5
    assert summary["batches_missing"] == 2 and summary["events_dropped"] == 9
    assert summary["rejected"] == 2 and len(summary["rejected_reasons"]) == 2
    assert any("another-run" in r for r in summary["rejected_reasons"])
    assert summary["violations"] == 0 and summary["write_errors"] == []
    (producer,) = summary["producers"]
    assert producer["pid"] == PID and producer["run_start"] and producer["run_end"]
    trace = read_trace(sidecar.trace_dir)
    assert [b.seq for b in trace.batches] == [0, 1, 4, 5] and trace.warnings == []
    assert trace.manifest.status == "finished"
    assert trace.manifest.counters.batches_missing == 2


def test_producer_without_run_end_marks_the_run_killed(sidecar: SidecarUnderTest) -> None:
    sidecar.send(batch(0, [start_event(), meta(0)]))
    summary = sidecar.drain()
    # A dead producer is not waited for: the drain ended on its own, not by its time limit.
    assert summary["drain_ended"] == "producers_done"
    assert summary["status"] == "killed" and summary["events_received"] == 2
    assert read_trace(sidecar.trace_dir).manifest.status == "killed"


def test_batches_sent_just_before_drain_are_kept(sidecar: SidecarUnderTest) -> None:
    sidecar.send(batch(0, [start_event()]))
    for seq in range(1, 200):
        sidecar.send(batch(seq, [meta(seq)]))
    sidecar.send(batch(200, [RunEnd(9, 10, 0, 0, "exit")]))
    summary = sidecar.drain()
    assert summary["batches_received"] == 201 and summary["batches_missing"] == 0


@pytest.mark.parametrize("how", ["eof", "sigterm"])
def test_stdin_eof_and_sigterm_drain_too(sidecar: SidecarUnderTest, how: str) -> None:
    sidecar.send(batch(0, [meta(0)]))
    time.sleep(0.3)
    if how == "eof":
        assert sidecar.process.stdin is not None
        sidecar.process.stdin.close()
    else:
        sidecar.process.send_signal(signal.SIGTERM)
    summary = sidecar.read_json()
    assert summary["event"] == "summary" and summary["events_received"] == 1
    assert sidecar.process.wait(timeout=15) == 0


def test_huge_garbage_does_not_crash_it(sidecar: SidecarUnderTest) -> None:
    sidecar.send(os.urandom(1 << 20))
    sidecar.send(b"")
    sidecar.send(batch(0, [meta(0)]))
    summary = sidecar.drain()
    assert summary["events_received"] == 1 and summary["rejected"] == 2


@pytest.mark.parametrize("content", [None, "{not json", '{"format": "something-else"}'])
def test_an_unusable_invariants_file_is_a_typed_error_line_and_exit_2(
    tmp_path: Path, content: str | None
) -> None:
    """The handshake says it instead of ``ready``; the launcher prints it as its own
    one line. Nothing is written into the trace and no socket is bound."""
    invariants = tmp_path / "inv.json"
    if content is not None:
        invariants.write_text(content)
    under_test = SidecarUnderTest(tmp_path, "--invariants", str(invariants))
    try:
        assert under_test.process.wait(timeout=30) == 2
        assert under_test.stderr() == ""
        (line,) = under_test.process.stdout.read().splitlines()  # type: ignore[union-attr]
        failed = decode_sidecar_line(line)
        assert isinstance(failed, SidecarFailed) and "inv.json" in failed.message
        assert "\n" not in failed.message
        assert not under_test.trace_dir.exists() or not any(under_test.trace_dir.iterdir())
        assert not (under_test.sock_dir / "events.sock").exists()
    finally:
        under_test.close()
