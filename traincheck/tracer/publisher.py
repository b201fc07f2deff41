"""Ship events to the sidecar without ever blocking or failing the training loop.

Events are appended to a deque (thread-safe under the GIL, no lock on the hot
path) and sent as one :class:`~traincheck.events.Batch` per flush: when the
buffer is full, every ``interval_s`` from a daemon thread, at every optimizer
step and at exit. The size and step flushes run on the training thread: handing
them to the flusher thread was measured slower (GIL hand-offs cost more than the
~20 us encode and the non-blocking send), and they never wait for a flush
already in progress. Sends are ``NOBLOCK`` on a ZeroMQ PUSH socket with
``IMMEDIATE`` set, so a missing or dead sidecar makes a send fail at once
instead of queueing without bound.

Step flushes are rate-limited (:data:`STEP_FLUSH_INTERVAL_S`): every send wakes
ZeroMQ's I/O thread and the sidecar, and measured in the training loop one send
per optimizer step cost ~130 us of a 2 ms step, several times the encoding
itself; a send every 50 ms keeps live alerts prompt at a fraction of that. Not in
a process that joined a process group of more than one rank: there every step is
flushed, because a cross-rank invariant can only be judged once the *other*
rank's state of that step has arrived, and with a rate limit a rank's state of
step n arrived when the job had gone steps further (an alert two steps late on
a 2-rank job of few-ms steps); a distributed step's collectives cost far more than
the send.

A batch that cannot be sent goes into a bounded ring of recent batches (the
*backlog*) instead of being dropped at once: a job started with
``traincheck-run --detached``, or whose sidecar died, keeps its latest history
so that ``traincheck-attach`` can take it over. The ring is sent, oldest first,
as soon as a sidecar (re)binds the endpoint -- ZeroMQ reconnects the PUSH
socket by itself. Batches pushed out of the ring are dropped and counted; the
count travels in the next batch and in the exit counters file (with the evicted
batch numbers, so the sidecar does not count their sequence gaps again as
missing), and whatever is still in the ring at exit counts as dropped too. Memory is bounded by
the configured backlog (``TRAINCHECK_BACKLOG_BYTES``, read by
:class:`~traincheck.tracer.config.TracerConfig`; default
:data:`~traincheck.tracer.config.BACKLOG_MAX_BYTES`) plus ZeroMQ's ``SEND_HWM`` batches.

The socket is created lazily by :meth:`Publisher.open`, so a process that is
never opened (a DataLoader worker, a multiprocessing helper) creates no ZeroMQ
context at all.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable

import zmq

from traincheck.events import SCHEMA_VERSION, Batch, Event
from traincheck.run_registry import RunRegistration
from traincheck.tracer.config import BACKLOG_MAX_BYTES
from traincheck.wire import encode_batch

SEND_HWM = 16
"""Batches ZeroMQ may queue for a connected but slow sidecar before sends fail.

Small on purpose: ZeroMQ bounds its queue in messages, not bytes, and a batch
holds up to 50 ms of events (thousands); past this the byte-bounded backlog
takes over. 16 batches is most of a second of training."""

REGISTRY_INTERVAL_S = 1.0
"""How often the timer thread refreshes this process's run-registry entry."""

LINGER_MS = 500
"""How long closing the socket may wait for queued batches at exit."""

CONNECT_GRACE_S = 0.25
"""Total time, per process, the first send may wait for the connection to finish.

The socket connects asynchronously; without this a short script could lose its
``RunStart`` to a connection still being set up. Spent only until the first
successful send, so an absent sidecar costs at most this once."""


STEP_FLUSH_INTERVAL_S = 0.05
"""Least time between two flushes requested at optimizer steps (see the module doc)."""

MAX_EVICTED_RANGES = 1024
"""Runs of evicted batch numbers remembered for the exit counters file; past this,
later evictions are only counted (the sidecar then calls their gaps missing)."""


@dataclasses.dataclass
class PublisherCounters:
    """What happened to the events handed to the publisher."""

    events_sent: int = 0
    events_dropped: int = 0
    batches_sent: int = 0
    batches_dropped: int = 0
    evicted_seq_ranges: list[list[int]] = dataclasses.field(default_factory=list)
    """``[first, last]`` batch numbers pushed out of the backlog mid-run. They leave
    sequence gaps in the trace; the sidecar reads them from the exit counters file
    so each lost batch is counted once (dropped here), not also as missing."""

    def record_eviction(self, seq: int) -> None:
        ranges = self.evicted_seq_ranges
        if ranges and ranges[-1][1] + 1 == seq:
            ranges[-1][1] = seq
        elif len(ranges) < MAX_EVICTED_RANGES:
            ranges.append([seq, seq])


class Publisher:
    """Buffers events and PUSHes them in batches; drops (and counts) instead of blocking."""

    def __init__(
        self,
        *,
        endpoint: str,
        run_id: str,
        pid: int,
        rank: int,
        max_events: int = 2048,
        interval_s: float = 0.2,
        backlog_max_bytes: int = BACKLOG_MAX_BYTES,
        trace_dir: str | None = None,
        steps: Callable[[], int] | None = None,
        world_size: int = 1,
    ) -> None:
        self.endpoint = endpoint
        self.run_id = run_id
        self.pid = pid
        self.rank = rank
        self.max_events = max_events
        self.interval_s = interval_s
        self.counters = PublisherCounters()
        self.backlog_max_bytes = backlog_max_bytes
        self._backlog: collections.deque[tuple[bytes, int, int]] = collections.deque()
        """(encoded batch, events in it, its seq), oldest first."""
        self._backlog_bytes = 0
        self._registration = RunRegistration(
            run_id=run_id,
            pid=pid,
            rank=rank,
            world_size=world_size,
            endpoint=endpoint,
            trace_dir=trace_dir,
        )
        self._steps = steps
        self._events: collections.deque[Event] = collections.deque()
        self._lock = threading.Lock()
        self._last_flush = 0.0
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
        self._registration.register(self._current_step())
        self._timer = threading.Thread(
            target=self._run_timer, name="traincheck-publisher", daemon=True
        )
        self._timer.start()

    def append(self, event: Event) -> None:
        """Queue one event; flush from the caller's thread when the buffer is full."""
        self._events.append(event)
        if len(self._events) >= self.max_events:
            self.flush(wait=False)

    def flush_at_step(self) -> None:
        """An optimizer step ended: flush unless the last flush was very recent (on
        one rank; with several, always: see the module doc)."""
        if (
            self._registration.world_size > 1
            or time.monotonic() - self._last_flush >= STEP_FLUSH_INTERVAL_S
        ):
            self.flush(wait=False)

    def set_rank(self, rank: int, world_size: int) -> None:
        """The process joined a process group as ``rank`` of ``world_size``: batches
        sent from now on (what is still queued included) carry it, and so does the
        run registry. Taken under the flush lock, so no batch is half built."""
        with self._lock:
            self.rank = rank
            self._registration.rank = rank
            self._registration.world_size = world_size

    def flush(self, *, wait: bool = True) -> None:
        """Send everything queued. With ``wait=False``, skip if another flush is running."""
        if not self._lock.acquire(blocking=wait):
            return
        try:
            self._last_flush = time.monotonic()
            sock = self._socket
            if sock is None:
                return
            while self._events:
                count = min(len(self._events), 4 * self.max_events)
                self._send(sock, [self._events.popleft() for _ in range(count)])
            if self._backlog:
                self._send_backlog(sock)
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
            self._drop_backlog()
            self._registration.unregister()
            if self._socket is not None:
                self._socket.close(linger=LINGER_MS)
                self._socket = None
            if self._context is not None:
                self._context.term()
                self._context = None
        return self.counters

    @property
    def backlog_batches(self) -> int:
        """Batches held for a sidecar that is not (yet) taking them."""
        return len(self._backlog)

    def _run_timer(self) -> None:
        next_refresh = time.monotonic() + REGISTRY_INTERVAL_S
        while not self._stop.wait(self.interval_s):
            self.flush()
            if time.monotonic() >= next_refresh:
                next_refresh = time.monotonic() + REGISTRY_INTERVAL_S
                self._registration.refresh(self._current_step(), len(self._backlog))

    def _current_step(self) -> int:
        try:
            return self._steps() if self._steps is not None else 0
        except Exception:
            return 0

    def _send(self, sock: zmq.Socket[bytes], events: list[Event]) -> None:
        """Encode one batch and send it after the backlog; what cannot go now waits
        in the bounded backlog (oldest batches dropped and counted past the bound)."""
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
        if self._backlog and not self._send_backlog(sock):
            self._keep(data, len(events), batch.seq)
            return
        if not self._try_send(sock, data, len(events)):
            self._keep(data, len(events), batch.seq)

    def _try_send(self, sock: zmq.Socket[bytes], data: bytes, count: int) -> bool:
        try:
            sock.send(data, zmq.NOBLOCK)
        except zmq.ZMQError:
            return False
        self._connected = True
        self.counters.events_sent += count
        self.counters.batches_sent += 1
        return True

    def _send_backlog(self, sock: zmq.Socket[bytes]) -> bool:
        """Send held batches oldest first; True once the backlog is empty."""
        while self._backlog:
            data, count, _ = self._backlog[0]
            if not self._try_send(sock, data, count):
                return False
            self._backlog.popleft()
            self._backlog_bytes -= len(data)
        return True

    def _keep(self, data: bytes, count: int, seq: int) -> None:
        """Hold a batch for later; evict the oldest past the bound (a counted drop)."""
        self._backlog.append((data, count, seq))
        self._backlog_bytes += len(data)
        while self._backlog_bytes > self.backlog_max_bytes and self._backlog:
            old, old_count, old_seq = self._backlog.popleft()
            self._backlog_bytes -= len(old)
            self.counters.events_dropped += old_count
            self.counters.batches_dropped += 1
            self.counters.record_eviction(old_seq)

    def _drop_backlog(self) -> None:
        """At close: what no sidecar took is lost; count it."""
        for _, count, _ in self._backlog:
            self.counters.events_dropped += count
            self.counters.batches_dropped += 1
        self._backlog.clear()
        self._backlog_bytes = 0

    def _wait_for_connection(self, sock: zmq.Socket[bytes]) -> None:
        started = time.monotonic()
        try:
            sock.poll(timeout=int(self._grace_left_s * 1000), flags=zmq.POLLOUT)
        except zmq.ZMQError:
            self._grace_left_s = 0.0
            return
        self._grace_left_s = max(0.0, self._grace_left_s - (time.monotonic() - started))
