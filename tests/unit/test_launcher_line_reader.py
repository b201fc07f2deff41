"""SidecarLineReader: the launcher's deadline-bounded reader of the sidecar's stdout."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from traincheck.launcher.sidecar_process import SidecarLineReader, describe_exit
from traincheck.records import SidecarFailed, SidecarReady, SidecarSummary

READY = (SidecarReady, SidecarFailed)


@pytest.fixture
def pipe() -> Iterator[tuple[SidecarLineReader, int]]:
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(read_fd, "rb", buffering=0)
    reader = SidecarLineReader(stream)
    yield reader, write_fd
    reader.close()
    stream.close()
    try:
        os.close(write_fd)
    except OSError:
        pass


def test_skips_noise_and_other_events(pipe: tuple[SidecarLineReader, int]) -> None:
    reader, fd = pipe
    os.write(fd, b'noise\n{"event": "other"}\n[1]\n{"event": "summary", "status": "x"}\n')
    os.write(fd, b'{"event": "ready", "endpoint": "ipc://e", "pid": 5}\n')
    assert reader.read(READY, 1) == SidecarReady(endpoint="ipc://e", pid=5)


def test_a_failure_line_answers_the_wait_for_ready(pipe: tuple[SidecarLineReader, int]) -> None:
    reader, fd = pipe
    os.write(fd, b'{"event": "error", "message": "inv.json: not JSON"}\n')
    assert reader.read(READY, 1) == SidecarFailed(message="inv.json: not JSON")


def test_line_split_across_writes(pipe: tuple[SidecarLineReader, int]) -> None:
    reader, fd = pipe
    os.write(fd, b'{"event": "sum')
    os.write(fd, b'mary", "status": "finished", "violations": 2}\n')
    summary = reader.read((SidecarSummary,), 1)
    assert isinstance(summary, SidecarSummary) and summary.violations == 2


def test_times_out(pipe: tuple[SidecarLineReader, int]) -> None:
    reader, _ = pipe
    start = time.monotonic()
    assert reader.read(READY, 0.2) is None
    assert 0.15 < time.monotonic() - start < 2
    assert not reader.eof


def test_end_of_stream_is_noticed(pipe: tuple[SidecarLineReader, int]) -> None:
    reader, fd = pipe
    os.write(fd, b'{"event": "ready", "endpoint": "e", "pid": 1}')  # no newline, writer dies
    os.close(fd)
    assert reader.read(READY, 1) == SidecarReady(endpoint="e", pid=1)
    assert reader.read((SidecarSummary,), 1) is None and reader.eof


def test_describe_exit() -> None:
    assert describe_exit(-9) == "signal 9" and describe_exit(2) == "exit code 2"
