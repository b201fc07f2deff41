"""End to end through the real launcher, tracer, sockets and sidecar (issue: backbone).

Each test runs the installed CLIs as separate processes on tiny CPU pipelines.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import psutil
from conftest import EXAMPLES, SCRIPTS, cli, python_cmd, run_cli

STEP_RE = re.compile(r"at step (\d+)")


def first_alert_step(text: str) -> int:
    match = STEP_RE.search(text)
    assert match, f"no violation headline in:\n{text}"
    return int(match.group(1))


def test_healthy_run_with_another_seed_has_no_violations(zero_grad_invariants, tmp_path):
    result = run_cli(
        [
            cli("traincheck-run"),
            "--invariants",
            str(zero_grad_invariants.invariants),
            "--output-dir",
            str(tmp_path / "run"),
            "--",
            *python_cmd(
                EXAMPLES / "missing_zero_grad" / "healthy.py", "--seed", "7", "--steps", "25"
            ),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "VIOLATION" not in result.stderr and "FINDING" not in result.stderr
    assert re.search(r"\b0 violations\b", result.stderr), result.stderr


def test_missing_zero_grad_is_caught_live_and_offline(zero_grad_invariants, tmp_path):
    trace = tmp_path / "buggy"
    live = run_cli(
        [
            cli("traincheck-run"),
            "--invariants",
            str(zero_grad_invariants.invariants),
            "--output-dir",
            str(trace),
            "--",
            *python_cmd(
                EXAMPLES / "missing_zero_grad" / "buggy.py", "--seed", "3", "--steps", "20"
            ),
        ]
    )
    assert live.returncode == 0, live.stderr  # the job's own exit code
    assert "zero_grad" in live.stderr
    assert first_alert_step(live.stderr) <= 1

    offline = run_cli(
        [cli("traincheck-check"), "-f", str(trace), "-i", str(zero_grad_invariants.invariants)]
    )
    assert offline.returncode == 1, offline.stdout + offline.stderr
    report = offline.stdout + offline.stderr
    assert "zero_grad" in report
    assert first_alert_step(report) == first_alert_step(live.stderr)


def test_optimizer_over_stale_parameters_is_caught(stale_optimizer_invariants, tmp_path):
    result = run_cli(
        [
            cli("traincheck-run"),
            "--invariants",
            str(stale_optimizer_invariants.invariants),
            "--output-dir",
            str(tmp_path / "buggy"),
            "--verbose",
            "--",
            *python_cmd(EXAMPLES / "stale_optimizer" / "buggy.py", "--seed", "3", "--steps", "10"),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "VIOLATION" in result.stderr
    assert re.search(r"step\(?\)? does not change the param", result.stderr), result.stderr
    assert first_alert_step(result.stderr) == 0


def _wait_for_line(stream, pattern: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = stream.readline()
        if pattern in line:
            return
    raise AssertionError(f"{pattern!r} not seen within {timeout_s}s")


def _sidecar_of(launcher_pid: int) -> psutil.Process:
    for child in psutil.Process(launcher_pid).children(recursive=True):
        if "traincheck.sidecar" in " ".join(child.cmdline()):
            return child
    raise AssertionError("no sidecar child process found")


def test_sidecar_killed_mid_run_does_not_hurt_the_job(tmp_path):
    trace = tmp_path / "run"
    job = python_cmd(SCRIPTS / "e2e_slow_train.py", "--steps", "150", "--exit-code", "3")
    with subprocess.Popen(
        [cli("traincheck-run"), "--output-dir", str(trace), "--", *job],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as launcher:
        _wait_for_line(launcher.stdout, "step 20 ", timeout_s=60)
        _sidecar_of(launcher.pid).send_signal(signal.SIGKILL)
        stdout, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 3, stderr
    assert "done in" in stdout  # the job ran to its end with its own exit code
    assert re.search(r"sidecar exited unexpectedly", stderr), stderr
    assert re.search(r"dropped", stderr), stderr
    counters = [json.loads(p.read_text()) for p in trace.glob("tracer-*.json")]
    assert counters and sum(c["events_dropped"] for c in counters) > 0


def test_killed_job_leaves_a_checkable_trace(zero_grad_invariants, tmp_path):
    trace = tmp_path / "run"
    job = python_cmd(SCRIPTS / "e2e_slow_train.py", "--steps", "500")
    with subprocess.Popen(
        [cli("traincheck-run"), "--output-dir", str(trace), "--", *job],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as launcher:
        _wait_for_line(launcher.stdout, "step 30 ", timeout_s=60)
        for child in psutil.Process(launcher.pid).children(recursive=True):
            if "e2e_slow_train.py" in " ".join(child.cmdline()):
                os.kill(child.pid, signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=120)
    assert launcher.returncode == 128 + signal.SIGKILL, stderr
    manifest = json.loads((trace / "run.json").read_text())
    assert manifest["status"] == "killed"
    check = run_cli(
        [cli("traincheck-check"), "-f", str(trace), "-i", str(zero_grad_invariants.invariants)]
    )
    assert check.returncode in (0, 1), check.stderr
    assert "Traceback" not in check.stderr
    from traincheck.sidecar.store import read_trace

    steps = {e.event.step for e in read_trace(trace).events() if hasattr(e.event, "step")}
    assert max(steps) >= 25  # everything flushed before the kill is there


def assert_one_line_error(result, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_script_is_a_one_line_error(tmp_path):
    result = run_cli([cli("traincheck-run"), "--", "python", str(tmp_path / "nope.py")])
    assert_one_line_error(result, "nope.py")


def test_bad_invariants_files_are_one_line_errors(tmp_path):
    script = str(EXAMPLES / "missing_zero_grad" / "healthy.py")
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"format": "traincheck-invariants", "invariants": [{"relation": 3}')
    unreadable = tmp_path / "unreadable.json"
    unreadable.write_text("{}")
    unreadable.chmod(0)
    cases = [(tmp_path / "missing.json", "missing.json"), (malformed, "malformed.json")]
    if os.geteuid() != 0:  # root reads anything
        cases.append((unreadable, "unreadable.json"))
    for path, needle in cases:
        result = run_cli([cli("traincheck-run"), "--invariants", str(path), "--", "python", script])
        assert_one_line_error(result, needle)
        check = run_cli([cli("traincheck-check"), "-f", str(tmp_path), "-i", str(path)])
        assert check.returncode == 2 and "Traceback" not in check.stderr


def test_a_directory_that_is_not_a_trace_is_a_one_line_error(tmp_path, zero_grad_invariants):
    (tmp_path / "notes.txt").write_text("hello")
    check = run_cli(
        [cli("traincheck-check"), "-f", str(tmp_path), "-i", str(zero_grad_invariants.invariants)]
    )
    assert_one_line_error(check, str(tmp_path))
    infer = run_cli([cli("traincheck-infer"), "-f", str(tmp_path), "-o", str(tmp_path / "i.json")])
    assert_one_line_error(infer, str(tmp_path))
    missing = run_cli([cli("traincheck-infer"), "-f", str(tmp_path / "nope"), "-o", "x.json"])
    assert_one_line_error(missing, "nope")
