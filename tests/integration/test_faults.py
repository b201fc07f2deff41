"""Faults injected into real runs (issue 6): the job never notices, the trace says what
happened. Killed jobs and Ctrl-C are covered in test_launcher_run / test_e2e_backbone.
"""

from __future__ import annotations

import re
import resource
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import SCRIPTS, cli, python_cmd
from test_attach import manifest, private_environment, run, start, wait_for_line
from traincheck.sidecar.store import read_trace

SLOW_TRAIN = SCRIPTS / "e2e_slow_train.py"


env = pytest.fixture(private_environment, name="env")


def sidecar_of(launcher_pid: int) -> psutil.Process:
    for child in psutil.Process(launcher_pid).children(recursive=True):
        if "traincheck.sidecar" in " ".join(child.cmdline()):
            return child
    raise AssertionError("no sidecar child process found")


def job_seconds(stdout: str) -> float:
    match = re.search(r"done in ([\d.]+) s", stdout)
    assert match, stdout
    return float(match.group(1))


def test_sidecar_killed_then_a_new_one_attached(env: dict[str, str], tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    job = python_cmd(SLOW_TRAIN, "--steps", "300", "--sleep-s", "0.01")
    with start([cli("traincheck-run"), "-o", str(trace), "--", *job], env) as launcher:
        wait_for_line(launcher.stdout, "step 30 ")
        sidecar_of(launcher.pid).kill()
        attach = start([cli("traincheck-attach"), str(launcher.pid)], env)
        stdout, stderr = launcher.communicate(timeout=60)
        _, attach_err = attach.communicate(timeout=30)
    assert launcher.returncode == 0, stderr
    assert attach.returncode == 0, attach_err
    assert job_seconds(stdout) < 300 * 0.01 * 4 + 5
    final = manifest(trace)
    assert final["status"] == "finished" and final["attached"] is True
    assert [s["status"] for s in final["sessions"]] == ["running"]  # the killed sidecar's
    (producer,) = final["counters"]["producers"]
    assert producer["resumed_after"] is not None and producer["run_end"]
    stored = read_trace(trace)
    seqs = sorted(b.seq for b in stored.batches)
    missing = (seqs[-1] + 1) - len(seqs)
    assert missing == final["counters"]["batches_missing"]  # the gap is recorded exactly
    steps = {e.event.step for e in stored.events() if hasattr(e.event, "step")}
    assert max(steps) == 300


def step_seconds(stream, steps: int) -> float:
    """Wall time the job takes for its next ``steps`` printed steps."""
    started = time.monotonic()
    for _ in range(steps):
        assert stream.readline(), "job output ended"
    return time.monotonic() - started


def test_stalled_sidecar_costs_the_job_nothing_and_drops_are_counted(
    env: dict[str, str], tmp_path: Path
) -> None:
    env = {**env, "TRAINCHECK_BACKLOG_BYTES": "20000"}
    job = python_cmd(SLOW_TRAIN, "--steps", "1000", "--sleep-s", "0.002")
    with start([cli("traincheck-run"), "-o", str(tmp_path / "t"), "--", *job], env) as launcher:
        wait_for_line(launcher.stdout, "step 20 ")
        before = step_seconds(launcher.stdout, 150)
        sidecar = sidecar_of(launcher.pid)
        sidecar.suspend()
        try:
            # Stalled for 600 steps: more batches than ZeroMQ's queue and the backlog hold.
            during = step_seconds(launcher.stdout, 600) / 4
        finally:
            sidecar.resume()
        _, stderr = launcher.communicate(timeout=90)
    assert launcher.returncode == 0, stderr
    assert during < 2 * before + 0.2, f"150 steps: {before:.2f}s before, {during:.2f}s stalled"
    dropped = re.search(r"dropped (\d+) events", stderr)
    assert dropped and int(dropped.group(1)) > 0, stderr


def test_full_disk_job_continues_and_sidecar_says_what_it_lost(
    env: dict[str, str], tmp_path: Path
) -> None:
    limit = 64 * 1024

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    trace = tmp_path / "trace"
    job = python_cmd(SLOW_TRAIN, "--steps", "60", "--sleep-s", "0")
    result = subprocess.run(
        [cli("traincheck-run"), "-o", str(trace), "--", *job],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        preexec_fn=small_disk,
    )
    assert result.returncode == 0, result.stderr
    assert "done in" in result.stdout
    assert "cannot save the trace" in result.stderr
    assert re.search(r"trace write error: File too large", result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    stored = read_trace(trace)  # what fit is readable
    assert stored.batches and manifest(trace)["counters"]["batches_lost"] > 0


def test_corrupt_and_truncated_segments_are_read_up_to_the_damage(
    env: dict[str, str], tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    job = python_cmd(SLOW_TRAIN, "--steps", "40", "--sleep-s", "0")
    made = run([cli("traincheck-run"), "-o", str(trace), "--", *job], env)
    assert made.returncode == 0, made.stderr
    invariants = tmp_path / "inv.json"
    inferred = run([cli("traincheck-infer"), "-f", str(trace), "-o", str(invariants)], env)
    assert inferred.returncode == 0, inferred.stderr
    (segment,) = trace.glob("segment-*.tcs")
    whole = read_trace(trace).batches
    data = bytearray(segment.read_bytes())
    for damage in ("truncate", "flip"):
        damaged = data[: len(data) * 2 // 3] if damage == "truncate" else bytearray(data)
        if damage == "flip":
            damaged[len(data) // 2] ^= 0xFF
        segment.write_bytes(bytes(damaged))
        stored = read_trace(trace)
        assert 0 < len(stored.batches) < len(whole)
        assert stored.batches == whole[: len(stored.batches)]
        assert len(stored.warnings) == 1
        check = run([cli("traincheck-check"), "-f", str(trace), "-i", str(invariants)], env)
        assert check.returncode in (0, 1), check.stderr
        assert "Traceback" not in check.stderr, check.stderr
