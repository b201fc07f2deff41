"""The publisher drops and counts instead of blocking; batches decode with sequence numbers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from traincheck.events import MetaChange
from traincheck.tracer.publisher import Publisher
from traincheck.wire import decode_batch


def _event(i: int) -> MetaChange:
    return MetaChange(i, 1, "k", i, 0, "init")


@pytest.fixture
def endpoint(tmp_path: Path) -> str:
    return f"ipc://{tmp_path}/sidecar.sock"


@pytest.fixture
def pull(endpoint: str) -> Iterator[zmq.Socket[bytes]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = context.socket(zmq.PULL)
    sock.bind(endpoint)
    yield sock
    sock.close(linger=0)
    context.term()


def test_no_peer_counts_drops_and_never_blocks(endpoint: str) -> None:
    publisher = Publisher(endpoint=endpoint, run_id="r", pid=os.getpid(), rank=0)
    publisher.open()
    started = time.monotonic()
    for i in range(10_000):
        publisher.append(_event(i))
    publisher.flush()
    counters = publisher.close()
    assert time.monotonic() - started < 2.0
    assert counters.events_sent == 0
    assert counters.events_dropped == 10_000
    assert counters.batches_dropped >= 1


def test_batches_arrive_in_order_with_drop_totals(endpoint: str, pull: zmq.Socket[bytes]) -> None:
    publisher = Publisher(endpoint=endpoint, run_id="run-1", pid=42, rank=3, max_events=10)
    publisher.open()
    for i in range(25):
        publisher.append(_event(i))
    counters = publisher.close()
    batches = []
    while pull.poll(1000):
        batches.append(decode_batch(pull.recv(), expected_run_id="run-1"))
        if sum(len(b.events) for b in batches) == 25:
            break
    assert [b.seq for b in batches] == list(range(len(batches)))
    assert {(b.pid, b.rank, b.dropped_events) for b in batches} == {(42, 3, 0)}
    assert [e.ts_ns for b in batches for e in b.events] == list(range(25))
    assert counters.events_sent == 25 and counters.events_dropped == 0


def test_timer_flushes_without_being_asked(endpoint: str, pull: zmq.Socket[bytes]) -> None:
    publisher = Publisher(endpoint=endpoint, run_id="r", pid=1, rank=0, interval_s=0.05)
    publisher.open()
    publisher.append(_event(7))
    try:
        assert pull.poll(2000), "the timer thread never flushed"
        assert decode_batch(pull.recv()).events == [_event(7)]
    finally:
        publisher.close()


def test_unopened_publisher_creates_no_socket_and_sends_nothing(endpoint: str) -> None:
    publisher = Publisher(endpoint=endpoint, run_id="r", pid=1, rank=0, max_events=2)
    for i in range(5):
        publisher.append(_event(i))
    assert not publisher.is_open
    publisher.discard()
    assert publisher.close().events_dropped == 0


def test_a_rank_of_several_sends_every_step(endpoint: str, pull: zmq.Socket[bytes]) -> None:
    """One rank's steps are flushed at most every 50 ms; a rank of a group of several
    sends each step's events at that step, so a cross-rank invariant is judged at the
    step it is about, not when the other rank's next timed flush comes."""
    publisher = Publisher(endpoint=endpoint, run_id="r", pid=1, rank=0, interval_s=3600.0)
    publisher.open()
    publisher.set_rank(1, 2)
    try:
        for step in range(3):
            publisher.append(_event(step))
            publisher.flush_at_step()
        received = []
        while len(received) < 3 and pull.poll(2000):
            received.append(decode_batch(pull.recv()))
        assert [[e.ts_ns for e in b.events] for b in received] == [[0], [1], [2]]
    finally:
        publisher.close()
