"""A trace directory: every file's path, and reading and writing its small records.

Every process that reads or writes a trace directory (the sidecar, the launcher,
the tracer's exit counters, the offline tools) asks a :class:`TraceDir` for the
path, so each file is spelled in one place::

    TRACE_DIR/
      run.json                manifest (RunManifest), replaced atomically
      .run.json.reserve       space held for the last run.json on a full disk (while running)
      segment-00000.tcs ...   framed event batches (traincheck.sidecar.segment_codec)
      tracer-<pid>.json       exit counters of each traced process (TracerExitCounters)
      tracing_plan.json       the plan the run was traced with (TracingPlan)
      live_check/             result files of the live check, and
        first_violation.json  the marker written at its first violation (FirstViolation)

Records are encoded by :mod:`traincheck.records`; files are written owner-only
and atomically, and read with a size cap. Torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path

from traincheck.private_files import read_capped, write_private_file
from traincheck.records import (
    MANIFEST_MAX_BYTES,
    TRACER_COUNTERS_MAX_BYTES,
    FirstViolation,
    RunManifest,
    TracerExitCounters,
    decode_manifest,
    decode_tracer_counters,
    encode_first_violation,
    encode_manifest,
    encode_tracer_counters,
)
from traincheck.tracing_plan import TracingPlan, load_plan

MANIFEST_NAME = "run.json"
SEGMENT_GLOB = "segment-*.tcs"
TRACER_COUNTERS_GLOB = "tracer-*.json"
TRACING_PLAN_NAME = "tracing_plan.json"
LIVE_RESULTS_NAME = "live_check"
FIRST_VIOLATION_NAME = "first_violation.json"


class TraceDir:
    """The paths of one trace directory (it need not exist yet)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"TraceDir({str(self.root)!r})"

    # -- paths -----------------------------------------------------------------------

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def manifest_tmp(self) -> Path:
        """Where ``run.json`` is written before it is renamed into place."""
        return self.root / f".{MANIFEST_NAME}.tmp"

    @property
    def manifest_reserve(self) -> Path:
        """Disk space the sidecar holds while it runs and gives up for ``run.json``'s
        last word when the disk is full (removed at the end)."""
        return self.root / f".{MANIFEST_NAME}.reserve"

    def segment(self, index: int) -> Path:
        return self.root / f"segment-{index:05d}.tcs"

    def segments(self) -> list[Path]:
        """Every segment, in the order they were written."""
        return sorted(self.root.glob(SEGMENT_GLOB))

    def tracer_counters(self, pid: int) -> Path:
        return self.root / f"tracer-{pid}.json"

    def tracer_counters_files(self) -> list[Path]:
        return sorted(self.root.glob(TRACER_COUNTERS_GLOB))

    @property
    def tracing_plan(self) -> Path:
        return self.root / TRACING_PLAN_NAME

    @property
    def live_results(self) -> Path:
        """The live check's result folder (``traincheck-check -o`` writes the same files)."""
        return self.root / LIVE_RESULTS_NAME

    @property
    def first_violation_marker(self) -> Path:
        return self.live_results / FIRST_VIOLATION_NAME

    def holds_trace(self) -> bool:
        """A manifest or at least one segment: something ``read_trace`` can read."""
        return self.manifest.is_file() or any(self.root.glob(SEGMENT_GLOB))

    # -- run.json --------------------------------------------------------------------

    def read_manifest(self) -> RunManifest:
        """Raises ``OSError`` (absent, unreadable) or ``ValueError`` (``RecordError``:
        not a manifest; ``ForeignRecordError``: another tool's JSON; too large)."""
        return decode_manifest(read_capped(self.manifest, MANIFEST_MAX_BYTES))

    def write_manifest(self, manifest: RunManifest) -> None:
        """Replace ``run.json`` atomically, so a reader never sees half a manifest."""
        write_private_file(self.manifest, encode_manifest(manifest), tmp=self.manifest_tmp)

    # -- tracer-<pid>.json -----------------------------------------------------------

    def write_tracer_counters(self, counters: TracerExitCounters) -> None:
        write_private_file(self.tracer_counters(counters.pid), encode_tracer_counters(counters))

    def read_tracer_counters(self) -> tuple[list[TracerExitCounters], list[str]]:
        """Every valid counters file, and the names of those that are not (unreadable,
        too large, or not what a tracer writes)."""
        valid: list[TracerExitCounters] = []
        invalid: list[str] = []
        try:
            paths = self.tracer_counters_files()
        except OSError:
            return valid, invalid
        for path in paths:
            try:
                valid.append(decode_tracer_counters(read_capped(path, TRACER_COUNTERS_MAX_BYTES)))
            except (OSError, ValueError):
                invalid.append(path.name)
        return valid, invalid

    # -- tracing_plan.json -----------------------------------------------------------

    def recorded_plan(self) -> TracingPlan:
        """The plan the trace was recorded with (``write_plan_file`` writes it). A
        trace without one (an older launcher, a hand-made trace) or with an
        unreadable one is taken as fully traced, so that nothing is wrongly
        declared uncheckable."""
        try:
            return load_plan(self.tracing_plan)
        except (OSError, ValueError):
            return TracingPlan()

    # -- live_check/first_violation.json ---------------------------------------------

    def mark_first_violation(self, violation: FirstViolation) -> None:
        self.live_results.mkdir(parents=True, exist_ok=True)
        write_private_file(self.first_violation_marker, encode_first_violation(violation))
