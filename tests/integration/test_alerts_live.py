"""Live alerts and result files of ``traincheck-run --invariants``, and ``--on-violation stop``."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time

from conftest import EXAMPLES, SCRIPTS, cli, python_cmd, run_cli

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
            "--verbose",
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


def test_one_bug_is_one_finding_live_and_in_the_summary(zero_grad_invariants, tmp_path):
    """By default the terminal shows a finding once, not one alert per invariant: the
    missing zero_grad breaks several invariants, the user reads one diagnosis."""
    trace = tmp_path / "buggy"
    result = run_cli(
        [
            cli("traincheck-run"),
            "--invariants",
            str(zero_grad_invariants.invariants),
            "--output-dir",
            str(trace),
            "--",
            *python_cmd(BUGGY, "--seed", "3", "--steps", "10"),
        ]
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert not [line for line in lines if line.startswith("VIOLATION")], result.stderr
    blocks = [line for line in lines if line.startswith("FINDING")]
    assert len(blocks) == 1, result.stderr
    # How many other calls it preceded depends on how many APIs are traced.
    assert re.fullmatch(
        r"FINDING at step 0: `Optimizer.zero_grad` is never called; in the healthy runs it "
        r"ran before every `Optimizer.step` \(and \d+ other calls\)",
        blocks[0],
    ), result.stderr
    summary = json.loads((trace / "live_check" / "violations_summary.json").read_text())
    (finding,) = summary["findings"]
    assert finding["kind"] == "missing_call" and finding["first_step"] == 0
    assert len(finding["invariant_ids"]) == summary["distinct_invariants_violated"] > 1
    assert "1 finding, most likely root cause first:" in result.stderr
    assert f"  1. {finding['headline']}" in lines


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
    # The job's own KeyboardInterrupt traceback, wherever the interrupt landed, shows
    # none of our frames (it may land inside a hook: the tracer's excepthook drops them).
    job_traceback = result.stderr[result.stderr.find("Traceback") :]
    assert "KeyboardInterrupt" in job_traceback
    assert "/traincheck/" not in job_traceback, job_traceback


def test_held_alert_is_printed_while_the_job_is_silent(zero_grad_invariants, tmp_path):
    """A violation at the step where the job then stalls is printed during the stall
    (the sidecar's poll loop flushes held alerts), with the user's source line."""
    script = SCRIPTS / "violate_then_stall.py"
    stall_s = 8.0
    process = subprocess.Popen(
        [
            cli("traincheck-run"),
            "--invariants",
            str(zero_grad_invariants.invariants),
            "--output-dir",
            str(tmp_path / "trace"),
            "--",
            *python_cmd(script, "--stall-s", str(stall_s)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # One reader per pipe, each stamping its lines: communicate() would read stderr
    # too and take lines from the stamping reader (the cause of an old flake).
    stderr_lines: list[tuple[float, str]] = []
    stdout_lines: list[str] = []
    readers = [
        threading.Thread(
            target=lambda: stderr_lines.extend((time.monotonic(), line) for line in process.stderr),
            daemon=True,
        ),
        threading.Thread(target=lambda: stdout_lines.extend(process.stdout), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        process.wait(timeout=90)
    finally:
        process.kill()
    for reader in readers:
        reader.join(timeout=10)
    stdout = "".join(stdout_lines)
    stalled_at = float(re.search(r"stalling at (\d+\.\d+)", stdout).group(1))
    alerts = [(t, line) for t, line in stderr_lines if line.startswith(("FINDING", "VIOLATION"))]
    assert alerts, "".join(line for _, line in stderr_lines)
    # Printed during the stall (flush after ~1 s of silence), not at the end of the run.
    assert alerts[0][0] - stalled_at < stall_s - 3, (alerts[0][0] - stalled_at, stderr_lines)
    text = "".join(line for _, line in stderr_lines)
    violating_line = next(
        n for n, line in enumerate(script.read_text().splitlines(), 1) if "VIOLATING-LINE" in line
    )
    assert f"at:       {script}:{violating_line}" in text, text
