"""JsonLineReader: the launcher's deadline-bounded reader of the sidecar's stdout."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from traincheck.launcher.sidecar_process import JsonLineReader, describe_exit


@pytest.fixture
def pipe() -> Iterator[tuple[JsonLineReader, int]]:
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(read_fd, "rb", buffering=0)
    reader = JsonLineReader(stream)
    yield reader, write_fd
    reader.close()
    stream.close()
    try:
        os.close(write_fd)
    except OSError:
        pass


def test_skips_noise_and_other_events(pipe: tuple[JsonLineReader, int]) -> None:
    reader, fd = pipe
    os.write(fd, b'noise\n{"event": "other"}\n[1]\n{"event": "ready", "pid": 5}\n')
    assert reader.read_event("ready", 1) == {"event": "ready", "pid": 5}


def test_line_split_across_writes(pipe: tuple[JsonLineReader, int]) -> None:
    reader, fd = pipe
    os.write(fd, b'{"event": "sum')
    os.write(fd, b'mary", "violations": 2}\n')
    assert reader.read_event("summary", 1) == {"event": "summary", "violations": 2}


def test_times_out(pipe: tuple[JsonLineReader, int]) -> None:
    reader, _ = pipe
    start = time.monotonic()
    assert reader.read_event("ready", 0.2) is None
    assert 0.15 < time.monotonic() - start < 2
    assert not reader.eof


def test_end_of_stream_is_noticed(pipe: tuple[JsonLineReader, int]) -> None:
    reader, fd = pipe
    os.write(fd, b'{"event": "ready"}')  # no newline, then the writer dies
    os.close(fd)
    assert reader.read_event("ready", 1) == {"event": "ready"}
    assert reader.read_event("summary", 1) is None and reader.eof


def test_describe_exit() -> None:
    assert describe_exit(-9) == "signal 9" and describe_exit(2) == "exit code 2"
