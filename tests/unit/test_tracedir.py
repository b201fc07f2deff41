"""TraceDir owns every path of a trace directory; private files are owner-only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from traincheck import records
from traincheck.errors import UnsafePathError
from traincheck.private_files import (
    FileTooLargeError,
    ensure_private_dir,
    read_capped,
    write_private_file,
)
from traincheck.records import FirstViolation, RunManifest, TracerExitCounters
from traincheck.tracedir import TraceDir
from traincheck.tracing_plan import TracingPlan, write_plan_file


def _manifest(status: str = "running") -> RunManifest:
    return RunManifest(
        format=records.MANIFEST_FORMAT,
        format_version=records.MANIFEST_VERSION,
        run_id="r",
        command=[],
        started_wall_ns=1,
        status=status,
        sidecar_pid=2,
        hostname="h",
        endpoint="ipc://e",
        invariants=None,
    )


def test_every_path_of_a_trace_directory(tmp_path: Path) -> None:
    trace = TraceDir(tmp_path)
    assert trace.manifest == tmp_path / "run.json"
    assert trace.manifest_tmp == tmp_path / ".run.json.tmp"
    assert trace.segment(3) == tmp_path / "segment-00003.tcs"
    assert trace.tracer_counters(42) == tmp_path / "tracer-42.json"
    assert trace.tracing_plan == tmp_path / "tracing_plan.json"
    assert trace.live_results == tmp_path / "live_check"
    assert trace.first_violation_marker == tmp_path / "live_check" / "first_violation.json"
    assert not trace.holds_trace()
    for index in (1, 0, 10):
        trace.segment(index).write_bytes(b"")
    (tmp_path / "segment-x.txt").write_bytes(b"")
    assert trace.segments() == [trace.segment(0), trace.segment(1), trace.segment(10)]
    assert trace.holds_trace()


def test_manifest_is_replaced_atomically_and_owner_only(tmp_path: Path) -> None:
    trace = TraceDir(tmp_path)
    trace.write_manifest(_manifest())
    trace.write_manifest(_manifest("finished"))
    assert trace.read_manifest().status == "finished"
    assert stat.S_IMODE(trace.manifest.stat().st_mode) == 0o600
    assert not trace.manifest_tmp.exists()


def test_tracer_counters_are_read_back_and_bad_files_named(tmp_path: Path) -> None:
    trace = TraceDir(tmp_path)
    trace.write_tracer_counters(TracerExitCounters(pid=1, events_sent=10, evicted_seq_ranges=[]))
    trace.write_tracer_counters(TracerExitCounters(pid=2, events_sent=5))
    trace.tracer_counters(3).write_text("{torn")
    trace.tracer_counters(4).write_bytes(b" " * (records.TRACER_COUNTERS_MAX_BYTES + 1))
    valid, invalid = trace.read_tracer_counters()
    assert [c.pid for c in valid] == [1, 2] and sum(c.events_sent for c in valid) == 15
    assert invalid == ["tracer-3.json", "tracer-4.json"]
    assert stat.S_IMODE(trace.tracer_counters(1).stat().st_mode) == 0o600


def test_recorded_plan_falls_back_to_full_tracing(tmp_path: Path) -> None:
    trace = TraceDir(tmp_path)
    assert trace.recorded_plan() == TracingPlan()
    trace.tracing_plan.write_text("{not json")
    assert trace.recorded_plan() == TracingPlan()
    plan = TracingPlan(grad_states=False, sampling_interval=3)
    write_plan_file(trace.tracing_plan, plan)
    assert trace.recorded_plan() == plan
    assert stat.S_IMODE(trace.tracing_plan.stat().st_mode) == 0o600


def test_first_violation_marker(tmp_path: Path) -> None:
    trace = TraceDir(tmp_path / "t")
    trace.root.mkdir()
    trace.mark_first_violation(FirstViolation(step=4, what="x"))
    data = trace.first_violation_marker.read_bytes()
    assert records.decode_first_violation(data) == FirstViolation(step=4, what="x")


def test_private_dir_is_created_tightened_and_links_refused(tmp_path: Path) -> None:
    made = tmp_path / "a" / "b"
    ensure_private_dir(made)
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    ensure_private_dir(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    (tmp_path / "link").symlink_to(loose)
    with pytest.raises(UnsafePathError, match="not a plain directory"):
        ensure_private_dir(tmp_path / "link")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnsafePathError, match="not a plain directory"):
        ensure_private_dir(tmp_path / "file")


def test_private_dir_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "getuid", lambda: os.stat(tmp_path).st_uid + 1)
    with pytest.raises(UnsafePathError, match="another user"):
        ensure_private_dir(tmp_path)


def test_private_file_is_owner_only_even_over_an_old_tmp(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    stale = tmp_path / ".x.json.tmp"
    stale.write_text("old")
    stale.chmod(0o644)
    write_private_file(target, b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not stale.exists()


def test_read_capped(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    assert read_capped(path, 5) == b"12345"
    with pytest.raises(FileTooLargeError):
        read_capped(path, 4)
