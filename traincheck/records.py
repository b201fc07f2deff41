"""Every record that crosses a process besides the event stream, defined once.

The event stream has :mod:`traincheck.events`; everything else one process writes
and another reads is here, as typed msgspec structs with one encoder/decoder pair
each:

* the sidecar's stdout lines (:class:`SidecarReady`, :class:`SidecarFailed`,
  :class:`SidecarProgress`, :class:`SidecarSummary`) -- the launcher's handshake
  with the sidecar;
* ``run.json`` (:class:`RunManifest`), written by the sidecar, amended by the
  launcher when the sidecar is lost, read by ``read_trace`` and ``--follow``;
* ``tracer-<pid>.json`` (:class:`TracerExitCounters`), written by each traced
  process at exit, read by the sidecar and the launcher;
* ``violations_summary.json`` (:class:`ResultsSummary`) and the first-violation
  marker (:class:`FirstViolation`) of a check;
* the endpoint marker ``sidecar.json`` (:class:`SidecarMarker`) and the command
  file the launcher hands the sidecar.

The JSON is what the hand-built dicts wrote before these records existed: the
same field names, so files written by older versions decode (fields added since
have defaults). Decoding is validation: wrong types, negative counters, unknown
tags are refused with a :class:`RecordError` whose message is one line; nothing
is evaluated, and callers cap the bytes they read (``*_MAX_BYTES``).

The tracing plan keeps its own module (:mod:`traincheck.tracing_plan`): it is one
definition already, and its in-memory form (frozensets, an index built for the
tracer's per-call lookups) differs from its JSON on purpose.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

import msgspec

from traincheck.errors import one_line

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Pid = Annotated[int, msgspec.Meta(gt=0)]

MANIFEST_FORMAT = "traincheck-trace"
MANIFEST_VERSION = 1
MANIFEST_MAX_BYTES = 64 * 1024 * 1024
"""``run.json`` lists every producer of every session; far below this even for
thousands of ranks."""

TRACER_COUNTERS_MAX_BYTES = 1 << 20
RESULTS_SUMMARY_MAX_BYTES = 64 * 1024 * 1024
MARKER_MAX_BYTES = 4096
COMMAND_MAX_BYTES = 1 << 20


class RecordError(ValueError):
    """Bytes that are not a valid record of the expected kind (one-line message)."""


class ForeignRecordError(RecordError):
    """Valid JSON, but not ours at all (another tool's ``run.json``, say)."""


# -- tracer-<pid>.json ---------------------------------------------------------------


class TracerExitCounters(msgspec.Struct, frozen=True, kw_only=True):
    """What one traced process counted, written at its exit (``tracer-<pid>.json``).

    Present means the process ended normally, even when its ``RunEnd`` never
    reached a sidecar; the counters let the sidecar and the launcher report lost
    events when the sidecar saw less than was sent (or nothing at all)."""

    pid: Pid
    rank: int = 0
    events_sent: NonNegative = 0
    events_dropped: NonNegative = 0
    batches_sent: NonNegative = 0
    """0 in files of older tracers, which did not count it: unknown, not none."""
    batches_dropped: NonNegative = 0
    evicted_seq_ranges: list[tuple[NonNegative, NonNegative]] = msgspec.field(default_factory=list)
    """``(first, last)`` batch numbers evicted from the tracer's backlog mid-run."""


# -- the sidecar's summary (stdout line and run.json "counters") -----------------------


class ProducerSummary(msgspec.Struct, kw_only=True):
    """What one traced process sent the sidecar."""

    pid: int
    rank: int
    host: str | None = None
    ppid: int | None = None
    """The parent process (from ``RunStart``): a producer whose parent is traced too
    is a worker of the job, not the job itself."""
    batches: int = 0
    events: int = 0
    events_dropped: int = 0
    batches_dropped: int = 0
    batches_missing: int = 0
    batches_out_of_order: int = 0
    first_seq: int | None = None
    resumed_after: int | None = None
    last_seq: int = -1
    run_start: bool = False
    run_end: bool = False
    end_reason: str | None = None


class OutcomeCounts(msgspec.Struct, kw_only=True):
    """How many invariants ended in each outcome (see ``analysis/results.py``)."""

    failed: int = 0
    passed: int = 0
    not_triggered: int = 0
    uncheckable: int = 0


class InvariantOutcomes(msgspec.Struct, kw_only=True):
    """The live check's verdict per invariant, for the end-of-run summary."""

    invariants_checked: int = 0
    outcomes: OutcomeCounts = msgspec.field(default_factory=OutcomeCounts)
    not_triggered: list[str] = msgspec.field(default_factory=list)
    """Descriptions of the invariants that never applied in this run."""


class LiveCheckLag(msgspec.Struct, kw_only=True):
    """How the live check kept up. It follows the stored trace in a thread of its own
    (storage never waits for it): when it falls behind it reads the batches back from
    disk, and at the end it checks everything stored before the summary is written."""

    batches_checked: int = 0
    batches_from_disk: int = 0
    """Batches read back from the stored trace because the check had fallen behind."""
    most_behind_batches: int = 0
    """The most batches received and not yet checked at any moment."""
    events_unchecked: int = 0
    """Events of batches neither stored (disk full) nor held in memory: never checked."""
    read_errors: list[str] = msgspec.field(default_factory=list)
    """Stored batches the check could not read back (skipped; the trace is unchanged)."""
    pending: bool = False
    """``run.json`` was written with the trace complete and the check still finishing."""
    batches_behind_at_drain: int = 0
    """Batches stored but not yet checked when the trace was complete: what the check
    still had to do while the launcher waited (it reports its progress meanwhile)."""


class RunCounters(msgspec.Struct, kw_only=True):
    """The sidecar's books on one session: what came in, what was lost, what broke."""

    status: str
    """``finished``, ``killed`` or ``detached`` (see :class:`RunManifest`): judged by the
    job's own process(es); worker processes that vanished are ``workers_vanished``."""
    events_received: int = 0
    batches_received: int = 0
    batches_written: int = 0
    batches_lost: int = 0
    """Batches received but not saved (disk full, a write error): ``write_errors`` says why."""
    events_lost: int = 0
    """The events of ``batches_lost``."""
    events_dropped: int = 0
    batches_missing: int = 0
    rejected: int = 0
    rejected_reasons: list[str] = msgspec.field(default_factory=list)
    violations: int = 0
    invariant_outcomes: InvariantOutcomes | None = None
    checker_errors: int = 0
    producers: list[ProducerSummary] = msgspec.field(default_factory=list)
    write_errors: list[str] = msgspec.field(default_factory=list)
    """Distinct reasons writes failed (each said once, however many batches it cost)."""
    workers_vanished: list[int] = msgspec.field(default_factory=list)
    """Pids of traced worker processes (started by another traced process, e.g. a
    ``multiprocessing.Pool``'s) that ended without a goodbye -- a pool terminated by
    ``with Pool()`` -- while the job's own process ended normally: the run is not
    ``killed`` for them, but their traces stop early."""
    live_check: LiveCheckLag | None = None
    """How the live check kept up (None: no invariants to check)."""
    drain_ended: str | None = None
    """How the intake ended after the drain request: ``producers_done`` (every
    producer that may still send had ended, and the socket was quiet) or
    ``time_limit`` (one was still alive when the drain's time ran out: what it sent
    later is not in the trace). None: no drain (an attached sidecar that detached)."""


# -- the sidecar's stdout lines ----------------------------------------------------------


class SidecarReady(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag="ready"):
    """The socket is bound and ``run.json`` exists: the job may start."""

    endpoint: str
    pid: int


class SidecarFailed(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag="error"):
    """The sidecar cannot run for a reason the user can fix (a malformed invariants
    file, an unwritable trace directory); sent instead of ``ready``, before the job
    starts, and printed by the launcher as its own one-line error."""

    message: str


class SidecarProgress(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag="progress"):
    """Sent every half second while the live check finishes after a drain (the trace
    is complete by then): the launcher waits as long as ``events_checked`` advances,
    instead of for a fixed time that a large invariants file would outlast."""

    events_checked: NonNegative
    """Events checked so far (or skipped: neither stored nor held, see ``LiveCheckLag``)."""
    events_received: NonNegative
    """Events the check has to go through in all."""


class SidecarSummary(RunCounters, kw_only=True, tag_field="event", tag="summary"):
    """The last line, after a drain: the session's :class:`RunCounters`."""


SidecarLine = SidecarReady | SidecarFailed | SidecarProgress | SidecarSummary


def as_summary_line(counters: RunCounters) -> SidecarSummary:
    """``counters`` as the summary line (the same fields, tagged)."""
    return SidecarSummary(**msgspec.structs.asdict(counters))


# -- run.json ------------------------------------------------------------------------------


class SessionRecord(msgspec.Struct, kw_only=True):
    """An earlier sidecar session of a trace that was attached to again."""

    sidecar_pid: int | None = None
    started_wall_ns: int | None = None
    ended_wall_ns: int | None = None
    status: str | None = None
    counters: RunCounters | None = None


class TracerTotals(msgspec.Struct, kw_only=True):
    """The tracers' own counters summed over processes (``run.json`` of a run whose
    sidecar was lost, so the launcher says what it can)."""

    processes: int = 0
    events_sent: int = 0
    events_dropped: int = 0
    batches_dropped: int = 0


class RunManifest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``run.json``: what a trace directory holds and how the run ended.

    ``status``: ``running`` while a sidecar is up; ``finished``; ``killed`` (a
    process started but neither said ``RunEnd`` nor left its exit counters);
    ``detached`` (an attached sidecar let go of a job that runs on);
    ``sidecar_lost`` (the launcher's mark when the sidecar died, or was stopped,
    before the trace was complete). Fields at their default are left out of the
    file, as they always were."""

    format: str
    format_version: int
    run_id: str
    command: list[str]
    started_wall_ns: int
    status: str
    sidecar_pid: int
    hostname: str
    endpoint: str
    invariants: str | None
    attached: bool = False
    sessions: list[SessionRecord] = msgspec.field(default_factory=list)
    ended_wall_ns: int | None = None
    counters: RunCounters | None = None
    sidecar_lost: str | None = None
    tracer_counters: TracerTotals | None = None
    live_check_stopped: str | None = None
    """Why the launcher stopped a sidecar whose trace was complete while its live check
    was still finishing (``counters.live_check.pending``): the run's ``status`` stands,
    no live verdict was written, and ``traincheck-check`` gives it from the trace."""


# -- results of a check --------------------------------------------------------------------


class ViolationSummary(msgspec.Struct, kw_only=True):
    """One violated invariant in ``violations_summary.json``, root cause first."""

    root_cause_rank: int
    invariant_id: str
    relation_type: str
    display_name: str
    what: str
    expected: str = ""
    observed: str = ""
    apis: list[str] = msgspec.field(default_factory=list)
    variables: list[str] = msgspec.field(default_factory=list)
    first_step: int
    first_detection_step: int | None = None
    last_step: int
    occurrences: int
    ranks: list[int] = msgspec.field(default_factory=list)
    num_positive_examples: int = 0


class FindingSummary(msgspec.Struct, kw_only=True):
    """One finding: violated invariants that share a cause (``analysis/findings.py``),
    most likely root cause first; ``steps_by_rank`` maps a rank (as text, a JSON key)
    to the distinct steps with a violation, for the report's timeline."""

    rank: int
    headline: str
    subject: str
    kind: str
    invariant_ids: list[str]
    invariants: int
    violations: int
    first_step: int
    last_step: int
    ranks: list[int] = msgspec.field(default_factory=list)
    relations: list[str] = msgspec.field(default_factory=list)
    sources: list[str] = msgspec.field(default_factory=list)
    expected: str = ""
    observed: str = ""
    steps_by_rank: dict[str, list[int]] = msgspec.field(default_factory=dict)


class ListedInvariant(msgspec.Struct, kw_only=True):
    """An invariant named in a summary (one that passed, never applied, or could not
    be checked), so a report can list it without the ``*.log`` files."""

    id: str
    text: str
    relation: str


class RunDescription(msgspec.Struct, kw_only=True):
    """What a report says about the run it checked (from the trace's ``run.json``)."""

    command: list[str] = msgspec.field(default_factory=list)
    script: str | None = None
    started: str | None = None
    duration_s: float | None = None
    trace: str | None = None
    ranks: list[int] = msgspec.field(default_factory=list)
    traincheck_version: str | None = None
    invariants: str | None = None
    last_step: int | None = None
    loss_by_step: list[tuple[int, float]] = msgspec.field(default_factory=list)
    """(step, training loss) where the tracer could read it (see analysis/loss_series)."""


class ResultsSummary(msgspec.Struct, kw_only=True):
    """``violations_summary.json``: the one summary every report of a check is built
    from (the CLI's line, the file, ``report.html``). ``findings``,
    ``invariants_by_outcome`` and ``run`` are absent from files written before
    findings existed and read back empty."""

    first_violation_step: int | None = None
    first_detection_step: int | None = None
    total_violations: int = 0
    distinct_invariants_violated: int = 0
    invariants_checked: int = 0
    outcomes: OutcomeCounts = msgspec.field(default_factory=OutcomeCounts)
    violations: list[ViolationSummary] = msgspec.field(default_factory=list)
    findings: list[FindingSummary] = msgspec.field(default_factory=list)
    invariants_by_outcome: dict[str, list[ListedInvariant]] = msgspec.field(default_factory=dict)
    run: RunDescription = msgspec.field(default_factory=RunDescription)
    damage: list[str] = msgspec.field(default_factory=list)
    """What reading the trace had to skip (a torn or corrupt frame, an unreadable
    file): a check of a damaged trace says so, whatever it found."""


class FirstViolation(msgspec.Struct, frozen=True, kw_only=True):
    """Written by the live check at the first violation; ``--on-violation stop``
    waits for the file (the sidecar's stdout keeps its handshake lines)."""

    step: int
    what: str


# -- small markers -------------------------------------------------------------------------


class SidecarMarker(msgspec.Struct, frozen=True, kw_only=True):
    """``sidecar.json`` next to an ipc socket: which sidecar serves it."""

    pid: Pid


# -- codecs ----------------------------------------------------------------------------------

T = TypeVar("T")


class _JsonCodec(Generic[T]):
    """Encode/decode one record type as JSON; ``pretty`` for files people read."""

    def __init__(self, kind: Any, what: str, *, pretty: bool = False) -> None:
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(kind)
        self._encoder = msgspec.json.Encoder(order="sorted" if pretty else None)
        self._what = what
        self._pretty = pretty

    def encode(self, record: T) -> bytes:
        data = self._encoder.encode(record)
        return msgspec.json.format(data, indent=2) + b"\n" if self._pretty else data

    def decode(self, data: bytes | memoryview) -> T:
        try:
            return self._decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise RecordError(f"not a valid {self._what}: {one_line(str(exc))}") from None


_TRACER_COUNTERS: _JsonCodec[TracerExitCounters] = _JsonCodec(
    TracerExitCounters, "tracer counters file"
)
_SIDECAR_LINE: _JsonCodec[SidecarLine] = _JsonCodec(SidecarLine, "sidecar line")
_MANIFEST: _JsonCodec[RunManifest] = _JsonCodec(RunManifest, "run.json", pretty=True)
_untyped_json = msgspec.json.Decoder()
_RESULTS: _JsonCodec[ResultsSummary] = _JsonCodec(ResultsSummary, "violations summary", pretty=True)
_FIRST_VIOLATION: _JsonCodec[FirstViolation] = _JsonCodec(FirstViolation, "violation marker")
_SIDECAR_MARKER: _JsonCodec[SidecarMarker] = _JsonCodec(SidecarMarker, "sidecar marker")
_COMMAND: _JsonCodec[list[str]] = _JsonCodec(list[str], "command file (a list of strings)")


def encode_tracer_counters(record: TracerExitCounters) -> bytes:
    return _TRACER_COUNTERS.encode(record)


def decode_tracer_counters(data: bytes | memoryview) -> TracerExitCounters:
    """A counters file, checked: non-negative integer counters, ranges in order."""
    record = _TRACER_COUNTERS.decode(data)
    if any(first > last for first, last in record.evicted_seq_ranges):
        raise RecordError(
            "not a valid tracer counters file: an evicted range ends before it starts"
        )
    return record


def encode_sidecar_line(record: SidecarLine) -> bytes:
    """One line of the sidecar's stdout, newline included."""
    return _SIDECAR_LINE.encode(record) + b"\n"


def decode_sidecar_line(line: bytes | memoryview) -> SidecarLine:
    return _SIDECAR_LINE.decode(line)


def encode_manifest(manifest: RunManifest) -> bytes:
    return _MANIFEST.encode(manifest)


def decode_manifest(data: bytes | memoryview) -> RunManifest:
    """``run.json``; :class:`ForeignRecordError` when it is JSON of something else."""
    try:
        raw = _untyped_json.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise RecordError(f"run.json is not JSON: {one_line(str(exc))}") from None
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
        raise ForeignRecordError("not a TrainCheck trace manifest")
    if raw.get("format_version") != MANIFEST_VERSION:
        raise RecordError(f"run.json format_version {raw.get('format_version')!r} is not supported")
    try:
        return msgspec.convert(raw, RunManifest)
    except msgspec.ValidationError as exc:
        raise RecordError(f"not a valid run.json: {one_line(str(exc))}") from None


def encode_results_summary(summary: ResultsSummary) -> bytes:
    return _RESULTS.encode(summary)


def decode_results_summary(data: bytes | memoryview) -> ResultsSummary:
    return _RESULTS.decode(data)


def encode_first_violation(record: FirstViolation) -> bytes:
    return _FIRST_VIOLATION.encode(record) + b"\n"


def decode_first_violation(data: bytes | memoryview) -> FirstViolation:
    return _FIRST_VIOLATION.decode(data)


def encode_sidecar_marker(record: SidecarMarker) -> bytes:
    return _SIDECAR_MARKER.encode(record)


def decode_sidecar_marker(data: bytes | memoryview) -> SidecarMarker:
    return _SIDECAR_MARKER.decode(data)


def encode_command(command: list[str]) -> bytes:
    return _COMMAND.encode(command)


def decode_command(data: bytes | memoryview) -> list[str]:
    return _COMMAND.decode(data)
