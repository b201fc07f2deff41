"""Live alerts and result files of ``traincheck-run --invariants``, and ``--on-violation stop``."""

from __future__ import annotations

import json
import re

from conftest import EXAMPLES, cli, python_cmd, run_cli

BUGGY = EXAMPLES / "missing_zero_grad" / "buggy.py"
STOP_STEPS = 5000


def test_live_alerts_grouped_once_each_with_result_files(zero_grad_invariants, tmp_path):
    trace = tmp_path / "buggy"
    result = run_cli(
        [
            cli("traincheck-run"),
            "--invariants",
            str(zero_grad_invariants.invariants),
            "--output-dir",
            str(trace),
            "--fail-on-violation",
            "--",
            *python_cmd(BUGGY, "--seed", "3", "--steps", "10"),
        ]
    )
    assert result.returncode == 1, result.stderr
    alerts = [line for line in result.stderr.splitlines() if line.startswith("VIOLATION")]
    summary = json.loads((trace / "live_check" / "violations_summary.json").read_text())
    # De-duplicated: one full alert per violated invariant, repeats only counted.
    assert len(alerts) == summary["distinct_invariants_violated"] > 0
    assert summary["total_violations"] > len(alerts)
    assert re.search(r"repeated: .* violations in all, steps 0\.\.9", result.stderr)
    # Printed in root-cause order: the first alert is the summary's rank 1.
    assert summary["violations"][0]["what"] in alerts[0]
    assert "zero_grad" in alerts[0]
    assert summary["first_detection_step"] <= 1
    for name in ("failed.log", "passed.log", "not_triggered.log", "uncheckable.log", "report.html"):
        assert (trace / "live_check" / name).is_file()
    # Whole lines only: every alert headline is complete (nothing spliced into it).
    for line in alerts:
        assert re.fullmatch(r"VIOLATION at step \d+ \(rank \d+\): \S.*", line), line


def test_on_violation_stop_interrupts_the_job(zero_grad_invariants, tmp_path):
    trace = tmp_path / "stopped"
    result = run_cli(
        [
            cli("traincheck-run"),
            "--invariants",
            str(zero_grad_invariants.invariants),
            "--output-dir",
            str(trace),
            "--on-violation",
            "stop",
            "--",
            *python_cmd(BUGGY, "--seed", "3", "--steps", str(STOP_STEPS)),
        ]
    )
    steps_run = len(re.findall(r"^step \d+ ", result.stdout, re.MULTILINE))
    assert "stopping the job (--on-violation stop)" in result.stderr
    assert result.returncode == 130, result.stderr
    assert steps_run < STOP_STEPS  # stopped long before the end
