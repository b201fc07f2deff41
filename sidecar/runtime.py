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

import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traincheck.sidecar.receiver import IntakeLedger, Receiver
from traincheck.sidecar.store import StoredEvent, TraceWriter, write_manifest

from traincheck.errors import InvariantsFileError
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


class LiveCheck:
    """The checker behind a guard: its failures are counted, never fatal.

    Without an invariants file there is nothing to check and ``feed`` is a no-op.
    The checker modules are imported only when an invariants file is given, so a
    store-only sidecar works before (or without) them.
    """

    def __init__(self, invariants: Path | None) -> None:
        self.violations = 0
        self.errors = 0
        self._checker: Any = None
        self._format_alert: Any = None
        if invariants is None:
            return
        if not invariants.is_file():
            raise InvariantsFileError(f"invariants file not found: {invariants}")
        try:
            from traincheck.sidecar.alerts import format_alert
            from traincheck.sidecar.checker import Checker
            from traincheck.sidecar.invariants import load_invariants
        except ImportError as exc:
            # Degrade to a store-only sidecar: the trace can still be checked offline.
            emit_alert(f"traincheck sidecar: warning: live checking unavailable ({exc})")
            return
        self._checker = Checker(load_invariants(invariants))
        self._format_alert = format_alert

    def feed(self, stored: StoredEvent) -> None:
        if self._checker is not None:
            self._report(lambda: self._checker.feed(stored))

    def finish(self) -> None:
        if self._checker is not None:
            self._report(self._checker.finish)

    def _report(self, produce: Any) -> None:
        try:
            violations = produce() or []
            for violation in violations:
                self.violations += 1
                emit_alert(self._format_alert(violation))
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
        self.check = LiveCheck(options.invariants)
        self.ledger = IntakeLedger()
        self.writer = TraceWriter(options.trace_dir)
        self.receiver = Receiver(options.endpoint)
        self.started_wall_ns = time.time_ns()

    def handle(self, message: bytes) -> None:
        """Validate, persist and check one message."""
        try:
            batch = decode_batch(message, expected_run_id=self.options.run_id)
        except WireError as exc:
            self.ledger.record_rejected(str(exc))
            return
        self.writer.append(message)
        self.ledger.record_batch(batch)
        for event in batch.events:
            self.check.feed(StoredEvent(batch.pid, batch.rank, event))

    def receive_once(self, timeout_s: float) -> int:
        messages = self.receiver.receive(timeout_s)
        for message in messages:
            self.handle(message)
        return len(messages)

    def serve(self, drain: DrainRequest) -> None:
        while not drain.is_set():
            self.receive_once(POLL_INTERVAL_S)

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

    def manifest(self, status: str) -> dict[str, Any]:
        manifest: dict[str, Any] = {
            "run_id": self.options.run_id,
            "command": self.options.command,
            "started_wall_ns": self.started_wall_ns,
            "status": status,
            "sidecar_pid": os.getpid(),
            "hostname": socket.gethostname(),
            "endpoint": self.options.endpoint,
            "invariants": str(self.options.invariants) if self.options.invariants else None,
        }
        if status != "running":
            manifest["ended_wall_ns"] = time.time_ns()
            manifest["counters"] = self.summary(status)
        return manifest

    def summary(self, status: str) -> dict[str, Any]:
        ledger = self.ledger
        return {
            "status": status,
            "events_received": ledger.events_received,
            "batches_received": ledger.batches_received,
            "batches_written": self.writer.batches_written,
            "batches_lost": self.writer.batches_lost,
            "events_dropped": ledger.events_dropped,
            "batches_missing": ledger.batches_missing,
            "rejected": ledger.rejected,
            "rejected_reasons": ledger.reject_reasons,
            "violations": self.check.violations,
            "checker_errors": self.check.errors,
            "producers": [p.as_dict() for p in ledger.producers.values()],
            "write_errors": self.writer.write_errors,
        }

    def finish(self) -> dict[str, Any]:
        """Final checks, close the store, finalise run.json; return the summary."""
        self.check.finish()
        self.writer.close()
        self.receiver.close()
        status = "killed" if any(self.ledger.unfinished()) else "finished"
        self._write_manifest(status)
        return {"event": "summary", **self.summary(status)}

    def _write_manifest(self, status: str) -> None:
        try:
            write_manifest(self.options.trace_dir, self.manifest(status))
        except OSError as exc:
            self.writer.write_errors.append(f"run.json: {exc.strerror or exc}")


def print_line(payload: dict[str, Any]) -> None:
    """One JSON object per line on stdout, flushed: the launcher is waiting on it."""
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def run(options: SidecarOptions) -> int:
    """Run the sidecar until drained; the exit code is 0 unless it could not start."""
    drain = DrainRequest()
    # The launcher starts us in our own session, so a terminal Ctrl-C never gets
    # here; when run by hand, Ctrl-C and SIGTERM both mean "drain and stop".
    signal.signal(signal.SIGTERM, drain.on_signal)
    signal.signal(signal.SIGINT, drain.on_signal)
    options.trace_dir.mkdir(parents=True, exist_ok=True)
    sidecar = Sidecar(options)
    sidecar._write_manifest("running")
    print_line({"event": "ready", "endpoint": options.endpoint, "pid": os.getpid()})
    drain.watch_stdin()
    sidecar.serve(drain)
    sidecar.drain()
    print_line(sidecar.finish())
    return 0
