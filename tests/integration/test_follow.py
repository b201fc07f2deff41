"""``traincheck-check --follow``: checks a trace while the sidecar writes it, ends with the run."""

from __future__ import annotations

import json
import subprocess
import time

from conftest import EXAMPLES, cli, python_cmd, run_cli

BUGGY = EXAMPLES / "missing_zero_grad" / "buggy.py"


def test_follow_reports_as_it_goes_and_matches_offline(zero_grad_invariants, tmp_path):
    trace, follow_out, offline_out = tmp_path / "trace", tmp_path / "follow", tmp_path / "offline"
    invariants = str(zero_grad_invariants.invariants)
    run = subprocess.Popen(
        [
            cli("traincheck-run"),
            "-o",
            str(trace),
            "--",
            *python_cmd(BUGGY, "--seed", "3", "--steps", "60"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (trace / "run.json").is_file():
            assert time.monotonic() < deadline, "the sidecar never wrote run.json"
            time.sleep(0.05)
        follow = subprocess.run(
            [
                cli("traincheck-check"),
                "--follow",
                "-f",
                str(trace),
                "-i",
                invariants,
                "-o",
                str(follow_out),
                "--follow-timeout-s",
                "90",
            ],
            capture_output=True,
            text=True,
            timeout=110,
        )
        assert run.wait(timeout=60) == 0
    finally:
        run.kill()
        run.wait()
    assert json.loads((trace / "run.json").read_text())["status"] == "finished"
    assert follow.returncode == 1, follow.stderr
    assert "FINDING at step 0" in follow.stdout and "zero_grad" in follow.stdout
    offline = run_cli(
        [cli("traincheck-check"), "-f", str(trace), "-i", invariants, "-o", str(offline_out)]
    )
    assert offline.returncode == 1
    for name in ("violations_summary.json", "failed.log", "passed.log", "not_triggered.log"):
        assert (follow_out / name).read_text() == (offline_out / name).read_text(), name


def test_onlinecheck_on_a_finished_trace_ends_at_once(zero_grad_invariants):
    """``traincheck-onlinecheck`` (the seeds' name) is ``traincheck-check --follow``.
    Without ``--follow-timeout-s`` the follow ends only when run.json says the run is
    over: that it ends at all (``run_cli`` turns a hang into a failure) is the check."""
    trace = zero_grad_invariants.traces[0]
    result = run_cli(
        [
            cli("traincheck-onlinecheck"),
            "-f",
            str(trace),
            "-i",
            str(zero_grad_invariants.invariants),
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 violations" in result.stdout
