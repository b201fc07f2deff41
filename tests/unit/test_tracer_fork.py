"""A forked child never touches the parent's socket: it starts over, gated, and
the process state gathered in ``traincheck.tracer.state`` starts over with it."""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import zmq

from traincheck.events import ApiCall, RunStart
from traincheck.tracer import state
from traincheck.tracer.config import TracerConfig
from traincheck.tracer.runtime import Tracer
from traincheck.tracer.state import EpochCounter
from traincheck.wire import decode_batch


@pytest.fixture
def tracer(tmp_path: Path) -> Iterator[tuple[Tracer, zmq.Socket[bytes]]]:
    endpoint = f"ipc://{tmp_path}/sidecar.sock"
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.bind(endpoint)
    config = TracerConfig(endpoint, "run", str(tmp_path), 0, 0, 1, debug=False)
    tracer = Tracer(config, gated=False)
    tracer.start()
    yield tracer, pull
    tracer.close()
    atexit.unregister(tracer.close)
    state.tracer = None
    state.hooks = None
    state.epochs = EpochCounter()
    pull.close(linger=0)
    context.term()


def test_forked_child_uses_its_own_socket(tracer: tuple[Tracer, zmq.Socket[bytes]]) -> None:
    parent, pull = tracer
    parent.begin_call("parent.api")
    parent_publisher = parent.publisher
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        ok = (
            parent.publisher is not parent_publisher
            and parent.gated
            and not parent.publisher.is_open
            and parent._stack() == []
        )
        parent.begin_call("child.api")
        parent.publisher.flush()
        parent.publisher.close()
        os._exit(0 if ok and parent.publisher.counters.events_sent >= 2 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent.publisher.flush()
    by_pid: dict[int, list[object]] = {}
    while pull.poll(1000):
        batch = decode_batch(pull.recv())
        by_pid.setdefault(batch.pid, []).extend(batch.events)
        if len(by_pid) == 2:
            break
    child_events = by_pid[pid]
    assert isinstance(child_events[0], RunStart) and child_events[0].pid == pid
    assert child_events[0].ppid == os.getpid()
    child_calls = [(e.api, e.call_id, e.parent_id) for e in child_events if isinstance(e, ApiCall)]
    assert child_calls == [("child.api", 1, 0)]
    parent_apis = [e.api for e in by_pid[os.getpid()] if isinstance(e, ApiCall)]
    assert parent_apis == ["parent.api"]


def test_forked_child_starts_its_process_state_over(
    tracer: tuple[Tracer, zmq.Socket[bytes]],
) -> None:
    """Everything in ``state`` that describes the parent's run is reset in a child;
    what the child still needs (its tracer, the installed hooks) is kept."""
    parent, _ = tracer
    parent.meta.set_annotation("epoch", 3)
    state.epochs.loader_id, state.epochs.count = 1234, 3
    state.hooks = hooks = SimpleNamespace(tracer=parent, uninstall=lambda: None)
    parent_publisher = parent.publisher
    pid = os.fork()
    if pid == 0:
        checks = [
            state.epochs == EpochCounter(),
            state.current() is parent and parent.armed and parent.gated,
            state.hooks is hooks,
            parent.publisher is not parent_publisher,
            state.inherited_publishers[-1] is parent_publisher,
            parent.meta.annotations == {} and parent.meta.step == 0,
            parent.pid == os.getpid(),
        ]
        os._exit(sum(1 << i for i, ok in enumerate(checks) if not ok))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "failed checks (bit mask)"
    assert (state.epochs.loader_id, state.epochs.count) == (1234, 3)  # the parent's, untouched
    assert parent.publisher is parent_publisher and not parent.gated


def test_forked_child_of_an_untraced_process_resets_the_epoch_count() -> None:
    state.epochs.loader_id, state.epochs.count = 99, 1
    pid = os.fork()
    if pid == 0:
        os._exit(0 if state.current() is None and state.epochs == EpochCounter() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    state.epochs = EpochCounter()
