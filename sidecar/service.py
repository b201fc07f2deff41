"""The sidecar's main loop: receive, store, check live, alert, drain, summarise.

The launcher talks to this process over its standard streams only:

* stdout carries exactly two JSON lines, ``{"event": "ready", ...}`` once the
  socket is bound and ``run.json`` exists, and ``{"event": "summary", ...}`` at
  the end -- a machine-readable handshake in the style of viztracer's collector.
* stdin carries one command, ``drain``; EOF means the same (a launcher that died
  must not leave a sidecar behind). SIGTERM drains too.
* stderr is the user's terminal: alerts, one whole write per alert.

The loop never waits on the socket without a timeout and never lets a bad message
or a failing checker take it down: both are counted and reported.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traincheck.sidecar.receiver import (
    IntakeLedger,
    Receiver,
    read_exit_counters,
    remove_marker,
    write_marker,
)
from traincheck.sidecar.store import TraceWriter

from traincheck.errors import InvariantsFileError
from traincheck.events import StoredEvent, single_events
from traincheck.records import (
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    InvariantOutcomes,
    RunCounters,
    RunManifest,
    SessionRecord,
    SidecarLine,
    SidecarReady,
    encode_sidecar_line,
    summary_line,
)
from traincheck.tracedir import TraceDir
from traincheck.wire import WireError, decode_batch

POLL_INTERVAL_S = 0.1
"""How long one poll waits; bounds how late a drain request is noticed."""

DRAIN_QUIET_S = 0.3
"""A drain ends once the socket has been silent this long (and producers ended)."""

DRAIN_MAX_S = 5.0
"""A drain never takes longer than this, whatever the producers do."""

MAX_CHECKER_ERRORS_SHOWN = 3


@dataclass(frozen=True)
class SidecarOptions:
    """What the launcher told this sidecar on its command line."""

    trace_dir: Path
    endpoint: str
    run_id: str
    invariants: Path | None = None
    command: list[str] = field(default_factory=list)
    attach: bool = False
    """Started by ``traincheck-attach`` for a job already running (see attach_cli)."""


class LiveCheck:
    """The checker behind a guard: its failures are counted, never fatal.

    Without an invariants file there is nothing to check and ``feed`` is a no-op.
    The checker modules are imported only when an invariants file is given, so a
    store-only sidecar works before (or without) them.
    """

    def __init__(self, invariants: Path | None, trace: TraceDir | None = None) -> None:
        self.violations = 0
        self.errors = 0
        self.outcomes: InvariantOutcomes | None = None
        """After ``finish``: outcome counts and the invariants never triggered."""
        self._checker: Any = None
        self._reporter: Any = None
        if invariants is None:
            return
        if not invariants.is_file():
            raise InvariantsFileError(f"invariants file not found: {invariants}")
        try:
            from traincheck.analysis.alert_sink import LiveReporter
            from traincheck.analysis.checker import Checker
            from traincheck.analysis.invariants_file import load_invariants
        except ImportError as exc:
            # Degrade to a store-only sidecar: the trace can still be checked offline.
            emit_alert(f"traincheck sidecar: warning: live checking unavailable ({exc})")
            return
        from traincheck.analysis.instrumentation import uncheckable_invariants

        invariant_set = load_invariants(invariants)
        # The launcher records the run's plan in the trace before starting us.
        plan = trace.recorded_plan() if trace is not None else None
        self._checker = Checker(
            invariant_set,
            uncheckable=uncheckable_invariants(invariant_set, plan) if plan else None,
        )
        # Grouped, de-duplicated, root-cause-ordered alerts; result files at the end.
        self._reporter = LiveReporter(self._checker, emit_alert, trace)

    @property
    def active(self) -> bool:
        """Whether events are checked: without a checker the sidecar skips building
        a ``StoredEvent`` per event (0.14 us/event that nothing would read)."""
        return self._checker is not None

    def feed(self, stored: StoredEvent) -> None:
        if self._checker is not None:
            self._report(lambda: self._checker.feed(stored))

    def pump(self) -> None:
        """Print alerts held past ``FLUSH_AFTER_S`` although no event arrived since:
        a job that stalls or hangs right after a violation must still show it."""
        if self._reporter is not None:
            self._report(lambda: [])

    def finish(self) -> None:
        if self._checker is not None:
            self._report(self._checker.finish)
            self._report(self._close_reporter)

    def _close_reporter(self) -> list[Any]:
        self.outcomes = self._reporter.close()
        return []

    def _report(self, produce: Any) -> None:
        try:
            violations = produce() or []
            self.violations += len(violations)
            self._reporter.report(violations)
        except Exception as exc:
            # A checker bug must not cost the user their trace: count it, say it
            # a few times, keep receiving and storing.
            self.errors += 1
            if self.errors <= MAX_CHECKER_ERRORS_SHOWN:
                emit_alert(f"traincheck sidecar: checker error: {type(exc).__name__}: {exc}")


def emit_alert(text: str) -> None:
    """Write one alert to stderr as whole lines in a single write, so alerts from
    this process never interleave mid-line with the training job's output."""
    data = (text if text.endswith("\n") else text + "\n").encode("utf-8", "replace")
    while data:
        written = os.write(2, data)
        data = data[written:]


class DrainRequest:
    """Set once by ``drain`` on stdin, stdin EOF, SIGTERM or SIGINT."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def watch_stdin(self) -> None:
        thread = threading.Thread(target=self._read_stdin, name="drain-watch", daemon=True)
        thread.start()

    def _read_stdin(self) -> None:
        for line in sys.stdin:
            if line.strip() == "drain":
                break
        self._event.set()

    def on_signal(self, _signum: int, _frame: object) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


class Sidecar:
    """One run's receive -> store -> check pipeline."""

    def __init__(self, options: SidecarOptions) -> None:
        self.options = options
        self.trace = TraceDir(options.trace_dir)
        self.check = LiveCheck(options.invariants, self.trace)
        self.ledger = IntakeLedger(joined_mid_run=options.attach)
        self.writer = TraceWriter(options.trace_dir)
        self.previous_sessions = previous_sessions(options.trace_dir) if options.attach else []
        self.receiver = Receiver(options.endpoint)
        write_marker(options.endpoint)
        self.started_wall_ns = time.time_ns()

    def handle(self, message: bytes | memoryview) -> None:
        """Validate, persist and check one message."""
        try:
            batch = decode_batch(message, expected_run_id=self.options.run_id)
        except WireError as exc:
            self.ledger.record_rejected(str(exc))
            return
        if not self.writer.append(message) and self.writer.batches_lost == 1:
            emit_alert(
                "traincheck sidecar: cannot save the trace: "
                f"{self.writer.write_errors[-1] if self.writer.write_errors else 'write failed'}; "
                "events are still received and checked live, lost batches are counted"
            )
        self.ledger.record_batch(batch)
        if self.check.active:
            pid, rank, feed = batch.pid, batch.rank, self.check.feed
            for event in single_events(batch.events):
                feed(StoredEvent(pid, rank, event))

    def receive_once(self, timeout_s: float) -> int:
        messages = self.receiver.receive(timeout_s)
        count = len(messages)
        # Oldest first, and each message let go of as soon as it is handled: a group
        # of large batches held until the last one is done would add up to
        # ``max_messages`` batches to the peak RSS while the sidecar catches up.
        messages.reverse()
        while messages:
            self.handle(messages.pop())
        return count

    def serve(self, drain: DrainRequest) -> None:
        while not drain.is_set():
            if not self.receive_once(POLL_INTERVAL_S):
                self.check.pump()  # the job went quiet: held alerts are due anyway

    def drain(self) -> None:
        """Take in what is still in flight: stop when every live producer has
        ended and the socket has been quiet, or after ``DRAIN_MAX_S``."""
        deadline = time.monotonic() + DRAIN_MAX_S
        last_message = time.monotonic()
        while time.monotonic() < deadline:
            if self.receive_once(0.05):
                last_message = time.monotonic()
                continue
            quiet = time.monotonic() - last_message >= DRAIN_QUIET_S
            if quiet and not self.ledger.unfinished_alive():
                return

    def manifest(self, status: str) -> RunManifest:
        ended = status != "running"
        return RunManifest(
            format=MANIFEST_FORMAT,
            format_version=MANIFEST_VERSION,
            run_id=self.options.run_id,
            command=self.options.command,
            started_wall_ns=self.started_wall_ns,
            status=status,
            sidecar_pid=os.getpid(),
            hostname=socket.gethostname(),
            endpoint=self.options.endpoint,
            invariants=str(self.options.invariants) if self.options.invariants else None,
            attached=self.options.attach,
            sessions=self.previous_sessions,
            ended_wall_ns=time.time_ns() if ended else None,
            counters=self.summary(status) if ended else None,
        )

    def summary(self, status: str) -> RunCounters:
        ledger = self.ledger
        return RunCounters(
            status=status,
            events_received=ledger.events_received,
            batches_received=ledger.batches_received,
            batches_written=self.writer.batches_written,
            batches_lost=self.writer.batches_lost,
            events_dropped=ledger.events_dropped,
            batches_missing=ledger.batches_missing,
            rejected=ledger.rejected,
            rejected_reasons=list(ledger.reject_reasons),
            violations=self.check.violations,
            invariant_outcomes=self.check.outcomes,
            checker_errors=self.check.errors,
            producers=[p.as_record() for p in ledger.producers.values()],
            write_errors=list(self.writer.write_errors),
        )

    def finish(self, *, detached: bool = False) -> RunCounters:
        """Final checks, close the store, finalise run.json; return the summary.

        ``detached``: the user stopped an attached sidecar while the job runs on;
        the run is ``detached`` (re-attachable), not killed."""
        self.check.finish()
        self.writer.close()
        self.receiver.close()
        remove_marker(self.options.endpoint)
        # Processes that exited normally left their counters: finished (not killed)
        # even if their RunEnd never reached us, and evictions counted only once.
        self.ledger.adopt_exit_counters(read_exit_counters(self.options.trace_dir))
        if detached and self.ledger.unfinished_alive():
            status = "detached"
        else:
            status = "killed" if any(self.ledger.unfinished()) else "finished"
        self._write_manifest(status)
        return self.summary(status)

    def _write_manifest(self, status: str) -> None:
        try:
            self.trace.write_manifest(self.manifest(status))
        except OSError as exc:
            self.writer.write_errors.append(f"run.json: {exc.strerror or exc}")


def ignore_file_size_limit() -> None:
    """Past RLIMIT_FSIZE a write raises SIGXFSZ, which would kill us; ignored, the
    write fails with EFBIG instead and the store records what it could not save."""
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def make_trace_dir(trace_dir: Path) -> None:
    """Create the trace directory; if that fails the sidecar still runs (live checks,
    counters) and every write error says what was not saved."""
    try:
        trace_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        emit_alert(f"traincheck sidecar: cannot create trace directory {trace_dir}: {exc}")


def previous_sessions(trace_dir: Path) -> list[SessionRecord]:
    """The sidecar sessions that wrote this trace before us (from its run.json), so an
    attached sidecar keeps the history of who recorded what."""
    try:
        manifest = TraceDir(trace_dir).read_manifest()
    except (OSError, ValueError):
        return []
    last = SessionRecord(
        sidecar_pid=manifest.sidecar_pid,
        started_wall_ns=manifest.started_wall_ns,
        ended_wall_ns=manifest.ended_wall_ns,
        status=manifest.status,
        counters=manifest.counters,
    )
    return [*manifest.sessions, last]


def print_line(record: SidecarLine) -> None:
    """One typed record per line on stdout, flushed: the launcher is waiting on it."""
    sys.stdout.buffer.write(encode_sidecar_line(record))
    sys.stdout.flush()


def run(options: SidecarOptions) -> int:
    """Run the sidecar until drained; the exit code is 0 unless it could not start."""
    drain = DrainRequest()
    # The launcher starts us in our own session, so a terminal Ctrl-C never gets
    # here; when run by hand, Ctrl-C and SIGTERM both mean "drain and stop".
    signal.signal(signal.SIGTERM, drain.on_signal)
    signal.signal(signal.SIGINT, drain.on_signal)
    ignore_file_size_limit()
    make_trace_dir(options.trace_dir)
    sidecar = Sidecar(options)
    sidecar._write_manifest("running")
    print_line(SidecarReady(endpoint=options.endpoint, pid=os.getpid()))
    drain.watch_stdin()
    sidecar.serve(drain)
    sidecar.drain()
    print_line(summary_line(sidecar.finish()))
    return 0
