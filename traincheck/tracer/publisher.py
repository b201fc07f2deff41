"""Ship events to the sidecar without ever blocking or failing the training loop.

Events are appended to a deque (thread-safe under the GIL, no lock on the hot
path) and sent as one :class:`~traincheck.events.Batch` per flush: when the
buffer is full, every ``interval_s`` from a daemon thread, at every optimizer
step and at exit. The size and step flushes run on the training thread: handing
them to the flusher thread was measured slower (GIL hand-offs cost more than the
~20 us encode and the non-blocking send), and they never wait for a flush
already in progress. Sends are ``NOBLOCK`` on a ZeroMQ PUSH socket with
``IMMEDIATE`` set, so a missing or dead sidecar makes a send fail at once
instead of queueing without bound: the batch is dropped and counted, and the
count travels in the next batch and in the exit counters file.

The socket is created lazily by :meth:`Publisher.open`, so a process that is
never opened (a DataLoader worker, a multiprocessing helper) creates no ZeroMQ
context at all.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time

import zmq

from traincheck.events import SCHEMA_VERSION, Batch, Event
from traincheck.wire import encode_batch

SEND_HWM = 1000
"""Batches ZeroMQ may queue for a connected but slow sidecar before sends fail."""

LINGER_MS = 500
"""How long closing the socket may wait for queued batches at exit."""

CONNECT_GRACE_S = 0.25
"""Total time, per process, the first send may wait for the connection to finish.

The socket connects asynchronously; without this a short script could lose its
``RunStart`` to a connection still being set up. Spent only until the first
successful send, so an absent sidecar costs at most this once."""


@dataclasses.dataclass
class PublisherCounters:
    """What happened to the events handed to the publisher."""

    events_sent: int = 0
    events_dropped: int = 0
    batches_sent: int = 0
    batches_dropped: int = 0


class Publisher:
    """Buffers events and PUSHes them in batches; drops (and counts) instead of blocking."""

    def __init__(
        self,
        *,
        endpoint: str,
        run_id: str,
        pid: int,
        rank: int,
        max_events: int = 512,
        interval_s: float = 0.2,
    ) -> None:
        self.endpoint = endpoint
        self.run_id = run_id
        self.pid = pid
        self.rank = rank
        self.max_events = max_events
        self.interval_s = interval_s
        self.counters = PublisherCounters()
        self._events: collections.deque[Event] = collections.deque()
        self._lock = threading.Lock()
        self._seq = 0
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._socket: zmq.Socket[bytes] | None = None
        self._connected = False
        self._grace_left_s = CONNECT_GRACE_S
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self.closed = False

    @property
    def is_open(self) -> bool:
        return self._socket is not None

    def open(self) -> None:
        """Create the socket, connect, and start the periodic flush thread."""
        if self._socket is not None or self.closed:
            return
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sock = context.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.connect(self.endpoint)
        self._context, self._socket = context, sock
        self._timer = threading.Thread(
            target=self._run_timer, name="traincheck-publisher", daemon=True
        )
        self._timer.start()

    def append(self, event: Event) -> None:
        """Queue one event; flush from the caller's thread when the buffer is full."""
        self._events.append(event)
        if len(self._events) >= self.max_events:
            self.flush(wait=False)

    def flush(self, *, wait: bool = True) -> None:
        """Send everything queued. With ``wait=False``, skip if another flush is running."""
        if not self._lock.acquire(blocking=wait):
            return
        try:
            sock = self._socket
            if sock is None:
                return
            while self._events:
                count = min(len(self._events), 4 * self.max_events)
                self._send(sock, [self._events.popleft() for _ in range(count)])
        finally:
            self._lock.release()

    def discard(self) -> None:
        """Forget queued events without sending or counting them (a disarmed process)."""
        self._events.clear()

    def close(self) -> PublisherCounters:
        """Stop the timer, send what is queued, and close the socket (bounded by linger)."""
        self._stop.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(timeout=2 * self.interval_s + CONNECT_GRACE_S)
        self.flush()
        with self._lock:
            self.closed = True
            if self._socket is not None:
                self._socket.close(linger=LINGER_MS)
                self._socket = None
            if self._context is not None:
                self._context.term()
                self._context = None
        return self.counters

    def _run_timer(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def _send(self, sock: zmq.Socket[bytes], events: list[Event]) -> None:
        """Encode and send one batch; any failure to send is a counted drop."""
        batch = Batch(
            schema_version=SCHEMA_VERSION,
            run_id=self.run_id,
            pid=self.pid,
            rank=self.rank,
            seq=self._seq,
            dropped_events=self.counters.events_dropped,
            events=events,
        )
        self._seq += 1
        data = encode_batch(batch)
        if not self._connected and self._grace_left_s > 0:
            self._wait_for_connection(sock)
        try:
            sock.send(data, zmq.NOBLOCK)
        except zmq.ZMQError:
            self.counters.events_dropped += len(events)
            self.counters.batches_dropped += 1
            return
        self._connected = True
        self.counters.events_sent += len(events)
        self.counters.batches_sent += 1

    def _wait_for_connection(self, sock: zmq.Socket[bytes]) -> None:
        started = time.monotonic()
        try:
            sock.poll(timeout=int(self._grace_left_s * 1000), flags=zmq.POLLOUT)
        except zmq.ZMQError:
            self._grace_left_s = 0.0
            return
        self._grace_left_s = max(0.0, self._grace_left_s - (time.monotonic() - started))
