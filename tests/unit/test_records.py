"""Records that cross a process (traincheck/records.py): round trips, the files older
versions wrote, and malformed input refused with a one-line RecordError."""

from __future__ import annotations

import json

import msgspec
import pytest

from traincheck import records
from traincheck.records import (
    FirstViolation,
    ForeignRecordError,
    InvariantOutcomes,
    OutcomeCounts,
    ProducerSummary,
    RecordError,
    ResultsSummary,
    RunCounters,
    RunManifest,
    SessionRecord,
    SidecarFailed,
    SidecarMarker,
    SidecarProgress,
    SidecarReady,
    SidecarSummary,
    TracerExitCounters,
    TracerTotals,
    ViolationSummary,
)

# What the code before these records wrote, byte for byte (json.dumps of dicts).
OLD_RUN_JSON = """{
  "command": ["python", "train.py"],
  "counters": {
    "batches_lost": 0, "batches_missing": 1, "batches_received": 5, "batches_written": 5,
    "checker_errors": 0, "events_dropped": 2, "events_received": 17,
    "invariant_outcomes": {"invariants_checked": 3, "not_triggered": ["never"],
                           "outcomes": {"failed": 1, "not_triggered": 1, "passed": 1,
                                        "uncheckable": 0}},
    "producers": [{"batches": 5, "batches_dropped": 0, "batches_missing": 1,
                   "batches_out_of_order": 0, "end_reason": "exit", "events": 17,
                   "events_dropped": 2, "first_seq": 0, "host": "h", "last_seq": 5,
                   "pid": 11, "rank": 0, "resumed_after": null, "run_end": true,
                   "run_start": true}],
    "rejected": 1, "rejected_reasons": ["bad"], "status": "finished", "violations": 4,
    "write_errors": []
  },
  "ended_wall_ns": 20,
  "endpoint": "ipc:///run/x/events.sock",
  "format": "traincheck-trace",
  "format_version": 1,
  "hostname": "h",
  "invariants": null,
  "run_id": "20250101-000000-abcdef",
  "sessions": [{"counters": null, "ended_wall_ns": null, "sidecar_pid": 5,
                "started_wall_ns": 1, "status": "running"}],
  "attached": true,
  "sidecar_pid": 42,
  "started_wall_ns": 10,
  "status": "finished"
}"""

OLD_LOST_RUN_JSON = json.dumps(
    {
        "format": "traincheck-trace",
        "format_version": 1,
        "run_id": "r",
        "command": [],
        "started_wall_ns": 1,
        "status": "sidecar_lost",
        "sidecar_pid": 9,
        "hostname": "h",
        "endpoint": "ipc://x",
        "invariants": "/inv.json",
        "sidecar_lost": "exited unexpectedly (signal 9)",
        "tracer_counters": {
            "processes": 1,
            "events_sent": 3,
            "events_dropped": 0,
            "batches_dropped": 0,
        },
    },
    indent=2,
    sort_keys=True,
)

OLD_SUMMARY = {
    "first_violation_step": 0,
    "first_detection_step": 1,
    "total_violations": 8,
    "distinct_invariants_violated": 1,
    "invariants_checked": 4,
    "outcomes": {"failed": 1, "passed": 2, "not_triggered": 1, "uncheckable": 0},
    "violations": [
        {
            "root_cause_rank": 1,
            "invariant_id": "abc",
            "relation_type": "APISequence",
            "display_name": "zero_grad before step",
            "what": "zero_grad missing",
            "expected": "called",
            "observed": "not called",
            "apis": ["torch.optim.Optimizer.zero_grad"],
            "variables": [],
            "first_step": 0,
            "first_detection_step": 1,
            "last_step": 7,
            "occurrences": 8,
            "ranks": [0],
            "num_positive_examples": 20,
        }
    ],
}


def test_run_json_written_by_the_old_code_reads_and_writes_back_the_same() -> None:
    manifest = records.decode_manifest(OLD_RUN_JSON.encode())
    assert manifest.status == "finished" and manifest.attached
    assert manifest.counters is not None and manifest.counters.producers[0].pid == 11
    assert manifest.counters.invariant_outcomes is not None
    assert manifest.counters.invariant_outcomes.outcomes.failed == 1
    assert manifest.sessions == [SessionRecord(sidecar_pid=5, started_wall_ns=1, status="running")]
    rewritten = json.loads(records.encode_manifest(manifest))
    expected = json.loads(OLD_RUN_JSON)
    # Fields added since, written back with the defaults that mean "nothing of that":
    # no events lost, no vanished workers, no live check, parent unknown, drain unknown.
    expected["counters"] |= {
        "events_lost": 0,
        "workers_vanished": [],
        "live_check": None,
        "drain_ended": None,
    }
    for producer in expected["counters"]["producers"]:
        producer["ppid"] = None
    assert rewritten == expected


def test_lost_sidecar_run_json_of_the_old_launcher() -> None:
    manifest = records.decode_manifest(OLD_LOST_RUN_JSON.encode())
    assert manifest.tracer_counters == TracerTotals(processes=1, events_sent=3)
    assert manifest.counters is None and not manifest.attached
    assert json.loads(records.encode_manifest(manifest)) == json.loads(OLD_LOST_RUN_JSON)


def test_a_running_manifest_leaves_out_what_it_does_not_know_yet() -> None:
    running = RunManifest(
        format=records.MANIFEST_FORMAT,
        format_version=records.MANIFEST_VERSION,
        run_id="r",
        command=["python"],
        started_wall_ns=1,
        status="running",
        sidecar_pid=2,
        hostname="h",
        endpoint="ipc://e",
        invariants=None,
    )
    data = json.loads(records.encode_manifest(running))
    assert set(data) == {
        "format", "format_version", "run_id", "command", "started_wall_ns", "status",
        "sidecar_pid", "hostname", "endpoint", "invariants",
    }  # fmt: skip
    assert records.decode_manifest(records.encode_manifest(running)) == running


@pytest.mark.parametrize(
    "text",
    ['{"format": "other"}', "[1, 2]", '"traincheck-trace"', "{}"],
)
def test_foreign_json_is_not_a_manifest(text: str) -> None:
    with pytest.raises(ForeignRecordError):
        records.decode_manifest(text.encode())


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[" * 100_000,
        '{"format": "traincheck-trace", "format_version": 9}',
        '{"format": "traincheck-trace", "format_version": 1, "run_id": 3}',
    ],
)
def test_broken_manifest_is_a_one_line_record_error(text: str) -> None:
    with pytest.raises(RecordError) as info:
        records.decode_manifest(text.encode())
    assert not isinstance(info.value, ForeignRecordError)
    assert "\n" not in str(info.value)


def test_tracer_counters_of_this_and_of_older_tracers() -> None:
    written = {
        "pid": 7,
        "rank": 1,
        "events_sent": 40,
        "events_dropped": 9,
        "batches_sent": 4,
        "batches_dropped": 1,
        "evicted_seq_ranges": [[2, 3]],
    }
    counters = records.decode_tracer_counters(json.dumps(written).encode())
    assert counters.evicted_seq_ranges == [(2, 3)] and counters.rank == 1
    assert json.loads(records.encode_tracer_counters(counters)) == written
    older = records.decode_tracer_counters(b'{"pid": 3, "events_dropped": 2, "batches_dropped": 1}')
    assert older == TracerExitCounters(pid=3, events_dropped=2, batches_dropped=1)


@pytest.mark.parametrize(
    "text",
    [
        '{"pid": 2, "events_dropped": "__import__(1)"}',
        '{"pid": -4}',
        '{"pid": 0}',
        '{"events_dropped": 1}',
        '{"pid": 5, "batches_dropped": true}',
        '{"pid": 5, "evicted_seq_ranges": [[1, 2], [3]]}',
        '{"pid": 5, "evicted_seq_ranges": [[9, 1]]}',
        '{"pid": 5, "events_sent": -1}',
        "[" * 100_000,
    ],
)
def test_malformed_tracer_counters_are_refused(text: str) -> None:
    with pytest.raises(RecordError) as info:
        records.decode_tracer_counters(text.encode())
    assert "\n" not in str(info.value)


def _counters() -> RunCounters:
    return RunCounters(
        status="killed",
        events_received=5,
        batches_received=2,
        rejected=1,
        rejected_reasons=["bad"],
        violations=3,
        invariant_outcomes=InvariantOutcomes(
            invariants_checked=2, outcomes=OutcomeCounts(failed=1, passed=1)
        ),
        producers=[ProducerSummary(pid=1, rank=0, host="h", batches=2, events=5)],
    )


def test_sidecar_lines_round_trip_as_one_tagged_line_each() -> None:
    lines = [
        SidecarReady(endpoint="ipc://e", pid=3),
        SidecarFailed(message="inv.json: invariant #2: unknown relation 'X'"),
        records.as_summary_line(_counters()),
        SidecarProgress(events_checked=41_000, events_received=120_000),
    ]
    for line in lines:
        encoded = records.encode_sidecar_line(line)
        assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
        assert records.decode_sidecar_line(encoded) == line
    summary = json.loads(records.encode_sidecar_line(lines[2]))
    assert summary["event"] == "summary" and summary["violations"] == 3
    assert json.loads(records.encode_sidecar_line(lines[0])) == {
        "event": "ready",
        "endpoint": "ipc://e",
        "pid": 3,
    }


def test_the_summary_line_is_the_run_counters_tagged() -> None:
    line = records.as_summary_line(_counters())
    assert isinstance(line, SidecarSummary) and isinstance(line, RunCounters)
    as_counters = msgspec.json.decode(msgspec.json.encode(_counters()))
    assert {k: v for k, v in json.loads(records.encode_sidecar_line(line)).items()} == {
        "event": "summary",
        **as_counters,
    }


@pytest.mark.parametrize(
    "text",
    [
        b"noise",
        b'{"event": "other"}',
        b"[1]",
        b'{"event": "ready"}',
        b'{"event": "progress", "events_checked": -1, "events_received": 3}',
    ],
)
def test_what_is_not_a_sidecar_line_is_refused(text: bytes) -> None:
    with pytest.raises(RecordError):
        records.decode_sidecar_line(text)


def test_results_summary_old_file_and_round_trip() -> None:
    summary = records.decode_results_summary(json.dumps(OLD_SUMMARY).encode())
    assert summary.violations[0].occurrences == 8 and summary.outcomes.passed == 2
    # Fields added since (findings, the listed invariants, the run) read back empty.
    assert summary.findings == [] and summary.invariants_by_outcome == {}
    rewritten = json.loads(records.encode_results_summary(summary))
    assert {k: v for k, v in rewritten.items() if k in OLD_SUMMARY} == OLD_SUMMARY
    empty = ResultsSummary()
    assert records.decode_results_summary(records.encode_results_summary(empty)) == empty
    assert isinstance(summary.violations[0], ViolationSummary)


def test_small_markers_and_the_command_file() -> None:
    marker = FirstViolation(step=3, what="zero_grad missing")
    assert json.loads(records.encode_first_violation(marker)) == {
        "step": 3,
        "what": "zero_grad missing",
    }
    assert records.decode_first_violation(records.encode_first_violation(marker)) == marker
    assert records.decode_sidecar_marker(b'{"pid": 12}') == SidecarMarker(pid=12)
    with pytest.raises(RecordError):
        records.decode_sidecar_marker(b'{"pid": "12"}')
    command = ["python", "train.py", "--lr", "0.1"]
    assert records.decode_command(records.encode_command(command)) == command
    with pytest.raises(RecordError, match="list of strings"):
        records.decode_command(b'["python", 3]')
