"""The sidecar's main loop: receive, store, hand to the live check, drain, summarise.

The launcher talks to this process over its standard streams only:

* stdout carries typed lines (:mod:`traincheck.records`): ``ready`` once the
  invariants are parsed, the plan recorded, the socket bound and ``run.json``
  written -- or instead ``error`` when the sidecar cannot run for a reason the
  user can fix, before the job starts -- then, after ``drain``, ``progress``
  every half second while the live check finishes from the complete trace, and
  ``summary`` at the end: a machine-readable handshake in the style of
  viztracer's collector.
* stdin carries ``job <pid>`` once the job is spawned, then ``drain``. EOF
  without ``drain`` means the launcher died (SIGKILL, a crash): the job it
  started runs on, so the sidecar keeps storing and checking until the job's
  processes are gone, then drains and stops (no launcher is left to read its
  summary; ``run.json`` has it). SIGTERM drains at once.
* stderr is the user's terminal: alerts, one whole write per alert.

The loop never waits on the socket without a timeout and never lets a bad message
or a failing checker take it down: both are counted and reported. Nor does it wait
for the live check, which follows the stored trace in a thread of its own
(:mod:`traincheck.sidecar.check_follower`): a slow check lags, it never costs an
event. The run's end state is judged by the job's own process (``job <pid>``);
traced workers that vanish (a terminated pool) are reported apart.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from traincheck.cli_scaffold import describe_os_error
from traincheck.errors import EXIT_USER_ERROR, UserError, one_line
from traincheck.processes import pid_alive
from traincheck.records import (
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    LiveCheckLag,
    RunCounters,
    RunManifest,
    SessionRecord,
    SidecarFailed,
    SidecarLine,
    SidecarProgress,
    SidecarReady,
    as_summary_line,
    encode_sidecar_line,
)
from traincheck.sidecar.check_follower import HANDOFF_MAX_BYTES, CheckFollower, slow_check_s
from traincheck.sidecar.live_check import LiveCheck, emit_alert, load_invariant_set
from traincheck.sidecar.receiver import (
    IntakeLedger,
    Receiver,
    read_exit_counters,
    remove_marker,
    write_marker,
)
from traincheck.sidecar.run_plan import decide_plan, publish_plan, read_base_plan
from traincheck.sidecar.store import SpaceReserve, TraceWriter
from traincheck.tracedir import TraceDir
from traincheck.wire import WireError, decode_batch

POLL_INTERVAL_S = 0.1
"""How long one poll waits; bounds how late a drain request is noticed."""

DRAIN_QUIET_S = 0.3
"""A drain ends once the socket has been silent this long (and producers ended)."""

DRAIN_MAX_S = 5.0
"""A drain never takes longer than this, whatever the producers do."""

PROGRESS_EVERY_S = 0.5
"""How often the sidecar says how far the live check is while it finishes after the
drain (a ``progress`` line on stdout)."""


@dataclass(frozen=True)
class SidecarOptions:
    """What the launcher told this sidecar on its command line."""

    trace_dir: Path
    endpoint: str
    run_id: str
    invariants: Path | None = None
    command: list[str] = field(default_factory=list)
    plan_file: Path | None = None
    """The launcher's plan for the tracer (see :mod:`traincheck.sidecar.run_plan`)."""
    selective: bool = False
    """Narrow the plan to what the invariants need, and write it back to ``plan_file``."""
    attach: bool = False
    """Started by ``traincheck-attach`` for a job already running (see cli/attach.py)."""
    verbose: bool = False
    """Alert every violated invariant in full instead of one block per finding."""


class DrainRequest:
    """Set once by ``drain`` on stdin, SIGTERM or SIGINT; stdin's EOF without a
    ``drain`` marks the launcher gone (``orphaned``) instead."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.orphaned = threading.Event()
        self.job_pid: int | None = None
        """The job the launcher spawned (``job <pid>`` on stdin), once it said so."""

    def watch_stdin(self) -> None:
        thread = threading.Thread(target=self._read_stdin, name="drain-watch", daemon=True)
        thread.start()

    def _read_stdin(self) -> None:
        for line in sys.stdin:
            words = line.split()
            if words == ["drain"]:
                self._event.set()
                return
            if len(words) == 2 and words[0] == "job" and words[1].isdigit():
                self.job_pid = int(words[1])
        self.orphaned.set()

    def on_signal(self, _signum: int, _frame: object) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


class Sidecar:
    """One run's receive -> store -> check pipeline; ``check`` holds the parsed
    invariants (none: store only)."""

    def __init__(
        self,
        options: SidecarOptions,
        check: LiveCheck | None = None,
        *,
        handoff_max_bytes: int = HANDOFF_MAX_BYTES,
    ) -> None:
        self.options = options
        self.trace = TraceDir(options.trace_dir)
        self.check = check if check is not None else LiveCheck(None)
        self.ledger = IntakeLedger(joined_mid_run=options.attach)
        self.writer = TraceWriter(options.trace_dir)
        self.reserve = SpaceReserve(self.trace.manifest_reserve)
        self.events_lost = 0
        self.previous_sessions = previous_sessions(options.trace_dir) if options.attach else []
        self.receiver = Receiver(options.endpoint)
        write_marker(options.endpoint)
        self.started_wall_ns = time.time_ns()
        self.workers_vanished: list[int] = []
        self.job_pid: int | None = None
        """The job's own process, once the launcher named it (see ``finish``)."""
        self.follower = (
            CheckFollower(self.check, handoff_max_bytes=handoff_max_bytes, slow_s=slow_check_s())
            if self.check.active
            else None
        )
        self.lag: LiveCheckLag | None = None
        self.drain_ended: str | None = None
        """How :meth:`drain` ended (see ``RunCounters.drain_ended``); None before."""

    def handle(self, message: bytes | memoryview) -> None:
        """Validate and persist one message, then hand it to the check that follows
        the store (never waited for)."""
        try:
            batch = decode_batch(message, expected_run_id=self.options.run_id)
        except WireError as exc:
            self.ledger.record_rejected(str(exc))
            return
        stored_at = self.writer.append(message)
        if stored_at is None:
            self.events_lost += len(batch.events)
            if self.writer.batches_lost == 1:
                say_cannot_save(self.writer.write_errors)
        self.ledger.record_batch(batch)
        if self.follower is not None:
            self.follower.stored(batch, len(message), stored_at)

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
            self.job_pid = drain.job_pid
            if not self.receive_once(POLL_INTERVAL_S):
                if drain.orphaned.is_set() and self.job_gone(drain.job_pid):
                    return
        self.job_pid = drain.job_pid

    def job_gone(self, job_pid: int | None) -> bool:
        """The launcher died: whether the job it started has ended too (its first
        process, and every traced process that has not said goodbye)."""
        if job_pid is not None and pid_alive(job_pid):
            return False
        return not any(self.ledger.unfinished_alive())

    def drain(self) -> None:
        """Take in what is still in flight: stop when every live producer has
        ended and the socket has been quiet, or after ``DRAIN_MAX_S``; which of
        the two is recorded (``drain_ended``)."""
        deadline = time.monotonic() + DRAIN_MAX_S
        last_message = time.monotonic()
        self.drain_ended = "time_limit"
        while time.monotonic() < deadline:
            if self.receive_once(0.05):
                last_message = time.monotonic()
                continue
            quiet = time.monotonic() - last_message >= DRAIN_QUIET_S
            if quiet and not self.ledger.unfinished_alive():
                self.drain_ended = "producers_done"
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
            events_lost=self.events_lost,
            violations=self.check.violations,
            invariant_outcomes=self.check.outcomes,
            checker_errors=self.check.errors,
            producers=[p.as_record() for p in ledger.producers.values()],
            write_errors=list(self.writer.write_errors),
            workers_vanished=self.workers_vanished,
            live_check=self.lag,
            drain_ended=self.drain_ended,
        )

    def finish(
        self,
        *,
        detached: bool = False,
        on_progress: Callable[[SidecarProgress], None] | None = None,
    ) -> RunCounters:
        """Close the store, let the check finish from it, finalise run.json; return
        the summary.

        The trace is complete before the check's last stretch: ``run.json`` says so
        at once (``live_check.pending``), so a sidecar stopped while a slow check
        finishes leaves a whole trace that says what is missing (the verdict).
        Meanwhile ``on_progress`` hears how far the check is, every
        ``PROGRESS_EVERY_S`` (the launcher waits while it advances).

        ``detached``: the user stopped an attached sidecar while the job runs on;
        the run is ``detached`` (re-attachable), not killed."""
        self.writer.close()
        self.receiver.close()
        remove_marker(self.options.endpoint)
        # Processes that exited normally left their counters: finished (not killed)
        # even if their RunEnd never reached us, and evictions counted only once.
        self.ledger.adopt_exit_counters(read_exit_counters(self.options.trace_dir))
        status = self.judge(detached=detached)
        if self.follower is not None:
            # How far behind the check is now, said before it catches up.
            behind = self.follower.batches_behind()
            self.lag = msgspec.structs.replace(
                self.follower.lag, pending=True, batches_behind_at_drain=behind
            )
            self.write_manifest(status)
            lag = self.follower.finish(on_progress, every_s=PROGRESS_EVERY_S)
            self.lag = msgspec.structs.replace(lag, batches_behind_at_drain=behind)
            if on_progress is not None:
                on_progress(self.follower.progress())  # all checked: the verdict is next
        self.check.finish(self.manifest(status))
        self.write_manifest(status)
        self.reserve.release()
        return self.summary(status)

    def judge(self, *, detached: bool) -> str:
        """The run's end state, judged by the job's own process(es); traced workers
        that vanished (a terminated pool) are listed in ``workers_vanished`` instead."""
        main_silent, workers_silent = self.ledger.ended_without_goodbye(self.job_pid)
        self.workers_vanished = workers_silent
        if detached and self.ledger.unfinished_alive():
            return "detached"
        return "killed" if main_silent else "finished"

    def write_manifest(self, status: str) -> None:
        """Replace ``run.json``; on a full disk, give up the space reserved for it and
        try once more, else keep the last good one and say why in the summary."""
        manifest = self.manifest(status)
        try:
            self.trace.write_manifest(manifest)
            return
        except OSError as exc:
            error = exc
        if error.errno in (errno.ENOSPC, errno.EDQUOT) and self.reserve.release():
            try:
                self.trace.write_manifest(manifest)
                return
            except OSError as exc:
                error = exc
        self.writer.record_error(f"{self.trace.manifest.name}: {error.strerror or error}")


def say_cannot_save(errors: list[str]) -> None:
    """The one line a full disk (or any failing write) earns on stderr; the batches it
    costs are counted and the summary and ``run.json`` say how many."""
    reason = errors[-1] if errors else "write failed"
    emit_alert(
        f"traincheck sidecar: cannot save the trace: {reason}; the job is not affected, "
        "events not saved are counted (see the summary and run.json)"
    )


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


def refuse_to_start(message: str) -> int:
    """Say why the sidecar cannot run, as the line the launcher waits for instead of
    ``ready`` (it prints it as its own error); nothing goes to stderr."""
    print_line(SidecarFailed(message=one_line(message)))
    return EXIT_USER_ERROR


def print_line(record: SidecarLine) -> None:
    """One typed record per line on stdout, flushed: the launcher is waiting on it.

    A launcher that died leaves no reader: the line is dropped (``run.json`` holds
    the same summary), never a BrokenPipeError that would end us."""
    try:
        sys.stdout.buffer.write(encode_sidecar_line(record))
        sys.stdout.flush()
    except OSError:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def start(options: SidecarOptions) -> Sidecar:
    """Everything that can keep the run from being traced, done before the job starts:
    parse the invariants (the run's only parse), decide and record the tracing plan,
    bind the socket, write ``run.json``. Raises ``UserError`` or ``OSError``."""
    invariants = load_invariant_set(options.invariants)
    plan = decide_plan(read_base_plan(options.plan_file), invariants, selective=options.selective)
    make_trace_dir(options.trace_dir)
    trace = TraceDir(options.trace_dir)
    publish_plan(plan, trace, options.plan_file)
    sidecar = Sidecar(options, LiveCheck(invariants, trace, plan, verbose=options.verbose))
    sidecar.write_manifest("running")
    return sidecar


def run(options: SidecarOptions) -> int:
    """Run the sidecar until drained. The exit code is 0, or 2 when it could not start
    (said on stdout as an ``error`` line, which the launcher prints as its own)."""
    drain = DrainRequest()
    # The launcher starts us in our own session, so a terminal Ctrl-C never gets
    # here; when run by hand, Ctrl-C and SIGTERM both mean "drain and stop".
    signal.signal(signal.SIGTERM, drain.on_signal)
    signal.signal(signal.SIGINT, drain.on_signal)
    ignore_file_size_limit()
    try:
        sidecar = start(options)
    except UserError as exc:
        return refuse_to_start(str(exc))
    except OSError as exc:
        return refuse_to_start(describe_os_error(exc))
    print_line(SidecarReady(endpoint=options.endpoint, pid=os.getpid()))
    drain.watch_stdin()
    sidecar.serve(drain)
    sidecar.drain()
    print_line(as_summary_line(sidecar.finish(on_progress=print_line)))
    return 0
