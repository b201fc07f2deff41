"""Attach to a running job (issue 6): ``--detached``, ``traincheck-ps``, ``traincheck-attach``.

Real launcher, tracer, sockets and sidecars. Each test gets its own per-user
directory (``XDG_RUNTIME_DIR``) so the registry it sees holds only its own jobs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SCRIPTS, cli, python_cmd

from traincheck.sidecar.store import read_trace

SLOW_TRAIN = SCRIPTS / "e2e_slow_train.py"


def private_environment() -> Iterator[dict[str, str]]:
    """An environment with a private, short XDG_RUNTIME_DIR (socket paths must be short),
    so the registry a test sees holds only its own jobs; removed afterwards."""
    runtime_dir = tempfile.mkdtemp(prefix="tc-")
    os.chmod(runtime_dir, 0o700)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}
    environ["XDG_RUNTIME_DIR"] = runtime_dir
    yield environ
    shutil.rmtree(runtime_dir, ignore_errors=True)


env = pytest.fixture(private_environment, name="env")


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def wait_for_line(stream, needle: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = stream.readline()
        if needle in line:
            return
        if not line:
            break
    raise AssertionError(f"{needle!r} not seen within {timeout_s}s")


def wait_for(predicate, timeout_s: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout_s}s")


def run(args: list[str], env: dict[str, str], timeout_s: float = 90):
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout_s)


def manifest(trace: Path) -> dict:
    try:
        return json.loads((trace / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def test_detach_and_reattach_keep_the_whole_history(env: dict[str, str], tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    job = python_cmd(SLOW_TRAIN, "--steps", "300", "--sleep-s", "0.01", "--exit-code", "4")
    with start([cli("traincheck-run"), "--detached", "-o", str(trace), "--", *job], env) as run_:
        wait_for_line(run_.stdout, "step 30 ")

        listing = run([cli("traincheck-ps")], env)
        assert listing.returncode == 0, listing.stderr
        rows = [line for line in listing.stdout.splitlines() if "e2e_slow_train.py" in line]
        assert len(rows) == 1 and " no " in rows[0], listing.stdout
        job_pid = int(rows[0].split()[0])

        # First attach, by the launcher's pid: takes over the backlog, then Ctrl-C detaches.
        with start([cli("traincheck-attach"), str(run_.pid)], env) as first:
            wait_for(lambda: manifest(trace).get("status") == "running", what="attach")
            listing = run([cli("traincheck-ps")], env)
            assert f"yes (pid {first.pid})" in listing.stdout, listing.stdout
            first.send_signal(signal.SIGINT)
            _, first_err = first.communicate(timeout=30)
        assert first.returncode == 0, first_err
        assert manifest(trace)["status"] == "detached"
        assert run_.poll() is None, "detaching stopped the job"

        # Second attach, by run id, stays until the job ends on its own.
        second = run([cli("traincheck-attach"), manifest(trace)["run_id"]], env)
        assert second.returncode == 0, second.stderr
        _, launcher_err = run_.communicate(timeout=60)
    assert run_.returncode == 4, launcher_err
    final = manifest(trace)
    assert final["status"] == "finished" and final["attached"] is True
    assert [s["status"] for s in final["sessions"]] == ["detached"]
    (producer,) = final["counters"]["producers"]
    assert producer["pid"] == job_pid and producer["run_end"]
    stored = read_trace(trace)
    assert stored.warnings == []
    seqs = sorted(b.seq for b in stored.batches)
    # PUSH/PULL has no acknowledgements: a batch already in the detaching sidecar's
    # pipe when it closes is lost. That can only be a batch or two, and the next
    # session counts it exactly (it resumes from the last stored batch number).
    lost = (seqs[-1] + 1) - len(seqs)
    assert seqs[0] == 0 and lost <= 2, seqs
    assert final["counters"]["batches_missing"] == lost
    steps = {e.event.step for e in stored.events() if hasattr(e.event, "step")}
    # A batch holds up to 50 ms of events (several steps of this loop): what is
    # missing is at most what the lost batches could have held, nothing more.
    per_batch = max(len({getattr(e, "step", -1) for e in b.events}) for b in stored.batches)
    assert {0, 300} <= steps and len(steps) >= 301 - lost * per_batch, (lost, per_batch)


def test_attach_names_a_job_or_says_why_not(env: dict[str, str]) -> None:
    for target, needle in (("no-such-run", "no traced job"), ("1", "not a traced job")):
        result = run([cli("traincheck-attach"), target], env)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert needle in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a process as another user")
def test_attach_refuses_another_users_process(env: dict[str, str]) -> None:
    with subprocess.Popen([shutil.which("sleep") or "sleep", "30"], user=65534) as other:
        try:
            result = run([cli("traincheck-attach"), str(other.pid)], env)
        finally:
            other.kill()
    assert result.returncode == 2
    assert "another user" in result.stderr and "Traceback" not in result.stderr


def test_registry_and_run_dir_are_private(env: dict[str, str], tmp_path: Path) -> None:
    job = python_cmd(SLOW_TRAIN, "--steps", "200", "--sleep-s", "0.01")
    base = Path(env["XDG_RUNTIME_DIR"]) / f"traincheck-{os.getuid()}"
    with start(
        [cli("traincheck-run"), "--detached", "-o", str(tmp_path / "t"), "--", *job], env
    ) as r:
        wait_for_line(r.stdout, "step 5 ")
        entries = list((base / "registry").glob("*.json"))
        assert len(entries) == 1
        assert entries[0].stat().st_mode & 0o777 == 0o600
        assert (base / "registry").stat().st_mode & 0o777 == 0o700
        run_dirs = [p for p in base.iterdir() if p.name != "registry"]
        assert [p.stat().st_mode & 0o777 for p in run_dirs] == [0o700]
        r.communicate(timeout=60)
    assert r.returncode == 0
    assert list((base / "registry").glob("*.json")) == []  # removed at exit


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_attach_finds_every_rank_of_a_torchrun_job(env: dict[str, str], tmp_path: Path) -> None:
    """``--detached`` torchrun job with 2 ranks: ps lists both, attach by the launcher's
    pid takes in both ranks' events, and the run ends ``finished`` with both producers."""
    trace = tmp_path / "trace"
    job = python_cmd(SCRIPTS / "ddp_slow_train.py", "--steps", "250", "--sleep-s", "0.02")
    with start([cli("traincheck-run"), "--detached", "-o", str(trace), "--", *job], env) as run_:
        wait_for_line(run_.stdout, "step 10 ", timeout_s=90)
        listing = run([cli("traincheck-ps")], env)
        assert listing.returncode == 0, listing.stderr
        rows = [line.split() for line in listing.stdout.splitlines() if "ddp_slow" in line]
        assert sorted(row[1] for row in rows) == ["0/2", "1/2"], listing.stdout
        assert len({row[2] for row in rows}) == 1  # one run id for both ranks
        attach = run([cli("traincheck-attach"), str(run_.pid)], env, timeout_s=90)
        assert attach.returncode == 0, attach.stderr
        assert "2 process(es)" in attach.stderr, attach.stderr
        _, launcher_err = run_.communicate(timeout=60)
    assert run_.returncode == 0, launcher_err
    final = manifest(trace)
    assert final["status"] == "finished", final
    producers = final["counters"]["producers"]
    assert sorted(p["rank"] for p in producers) == [0, 1]
    assert all(p["run_end"] and p["events"] > 0 for p in producers), producers
    stored = read_trace(trace)
    ranks = {e.rank for e in stored.events()}
    assert ranks == {0, 1}
    last_steps = {
        rank: max(
            e.event.step for e in stored.events() if e.rank == rank and hasattr(e.event, "step")
        )
        for rank in (0, 1)
    }
    assert last_steps == {0: 250, 1: 250}
