"""``traincheck-check``: exit codes, alerts, and the report files of ``-o``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tracegen import ZERO_GRAD, LoopSpec, write_trace

from traincheck.cli.check import main as check_main
from traincheck.cli.infer import main as infer_main


@pytest.fixture(scope="module")
def invariants_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inv")
    a = write_trace(root / "a", LoopSpec(steps=20, seed=1))
    b = write_trace(root / "b", LoopSpec(steps=12, seed=2))
    out = root / "invariants.json"
    assert infer_main(["-f", str(a), str(b), "-o", str(out)]) == 0
    return out


def test_healthy_run_exits_0_with_results_beside_the_trace(
    invariants_file, tmp_path, capsys, monkeypatch
) -> None:
    trace = write_trace(tmp_path / "t", LoopSpec(steps=40, seed=9))
    trace_files = set(trace.rglob("*"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert check_main(["-f", str(trace), "-i", str(invariants_file)]) == 0
    assert "0 violations" in capsys.readouterr().out
    assert set(trace.rglob("*")) == trace_files  # the trace is left as it was
    assert not any(cwd.iterdir())  # never the current directory
    (outdir,) = tmp_path.glob("t_check_*")
    assert json.loads((outdir / "violations_summary.json").read_text())["total_violations"] == 0


def test_missing_zero_grad_exits_1_with_one_finding(invariants_file, tmp_path, capsys) -> None:
    trace = write_trace(tmp_path / "t", LoopSpec(steps=8, seed=3, zero_grad=False))
    assert check_main(["-f", str(trace), "-i", str(invariants_file)]) == 1
    out = capsys.readouterr().out
    assert out.count("FINDING at step") == 1 and "VIOLATION" not in out
    assert "FINDING at step 0: `Optimizer.zero_grad` is never called" in out
    assert "1 finding, most likely root cause first:" in out
    assert "(first at step 0)" in out.splitlines()[-2]


def test_verbose_prints_every_invariant(invariants_file, tmp_path, capsys) -> None:
    trace = write_trace(tmp_path / "t", LoopSpec(steps=8, seed=3, zero_grad=False))
    assert check_main(["-f", str(trace), "-i", str(invariants_file), "--verbose"]) == 1
    out = capsys.readouterr().out
    first = next(line for line in out.splitlines() if line.startswith("VIOLATION"))
    assert first.startswith("VIOLATION at step 0 (rank 0): ") and "zero_grad" in first
    assert "8 violations in all, steps 0..7" in out
    assert "(first at step 0)" in out.splitlines()[-2]
    assert out.count("VIOLATION at step") == len(set(_invariant_ids(out)))  # each invariant once


def _invariant_ids(out: str) -> list[str]:
    return [line.split()[1] for line in out.splitlines() if line.startswith("    invariant ")]


def test_output_dir_reports(invariants_file, tmp_path) -> None:
    trace = write_trace(tmp_path / "t", LoopSpec(steps=8, seed=3, zero_grad=False))
    outdir = tmp_path / "report"
    assert check_main(["-f", str(trace), "-i", str(invariants_file), "-o", str(outdir)]) == 1
    failed = [json.loads(x) for x in (outdir / "failed.log").read_text().splitlines()]
    passed = [json.loads(x) for x in (outdir / "passed.log").read_text().splitlines()]
    not_triggered = (outdir / "not_triggered.log").read_text().splitlines()
    assert (outdir / "uncheckable.log").is_file() and (outdir / "report.html").is_file()
    assert failed and passed
    assert all(not r["check_passed"] and r["violations"] for r in failed)
    assert all(r["check_passed"] and r["triggered"] for r in passed)
    # Lead(zero_grad, ...) never triggers without zero_grad.
    assert any(ZERO_GRAD in json.loads(x)["invariant"]["text_description"] for x in not_triggered)
    summary = json.loads((outdir / "violations_summary.json").read_text())
    assert summary["first_violation_step"] == 0
    assert summary["distinct_invariants_violated"] == len(failed)
    assert summary["violations"][0]["occurrences"] >= 1
    event = failed[0]["violations"][0]["events"][0]
    assert event["type"] == "call" and "api" in event
    record = failed[0]["violations"][0]
    assert {"detection_step", "rank", "thread", "passing_example"} <= set(record)
    ranks = [v["root_cause_rank"] for v in summary["violations"]]
    assert ranks == list(range(1, len(failed) + 1))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_trace", "trace directory not found"),
        ("missing_invariants", "invariants file not found"),
        ("bad_invariants", "not JSON"),
    ],
)
def test_user_errors_exit_2(invariants_file, tmp_path, capsys, case, message) -> None:
    trace = write_trace(tmp_path / "t", LoopSpec(steps=3))
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    args = {
        "missing_trace": ["-f", str(tmp_path / "nope"), "-i", str(invariants_file)],
        "missing_invariants": ["-f", str(trace), "-i", str(tmp_path / "none.json")],
        "bad_invariants": ["-f", str(trace), "-i", str(bad)],
    }[case]
    assert check_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("traincheck-check: error: ") and message in err
    assert err.count("\n") == 1


def test_a_damaged_trace_is_said_to_be_damaged(invariants_file, tmp_path, capsys) -> None:
    """Exit code 0 said 'nothing wrong' about a trace the check could only partly read."""
    trace = write_trace(tmp_path / "t", LoopSpec(steps=10, seed=9))
    (segment,) = sorted(Path(trace).glob("segment-*.tcs"))
    data = bytearray(segment.read_bytes())
    data[20] ^= 0xFF  # inside the first frame's payload: its checksum no longer matches
    segment.write_bytes(bytes(data))
    outdir = tmp_path / "out"
    check_main(["-f", str(trace), "-i", str(invariants_file), "-o", str(outdir)])
    captured = capsys.readouterr()
    assert "checksum mismatch" in captured.err
    assert "the trace is damaged (1 place(s) skipped" in captured.out.splitlines()[-2]
    summary = json.loads((outdir / "violations_summary.json").read_text())
    assert len(summary["damage"]) == 1 and "checksum mismatch" in summary["damage"][0]
    assert "The trace is damaged" in (outdir / "report.html").read_text()
