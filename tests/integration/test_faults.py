"""Faults injected into real runs (issue 6): the job never notices, the trace says what
happened. Killed jobs and Ctrl-C are covered in test_launcher_run / test_e2e_backbone.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import resource
import signal
import statistics
import subprocess
from pathlib import Path

import psutil
import pytest
from conftest import SCRIPTS, cli, python_cmd
from test_attach import manifest, private_environment, run, start, wait_for_line

from traincheck.catalogue import CLIP_GRAD_NORM, OPTIMIZER_STEP
from traincheck.events import RunEnd
from traincheck.sidecar.check_follower import SLOW_CHECK_ENV
from traincheck.sidecar.store import read_trace
from traincheck.tracedir import TraceDir

SLOW_TRAIN = SCRIPTS / "e2e_slow_train.py"


env = pytest.fixture(private_environment, name="env")


def sidecar_of(launcher_pid: int) -> psutil.Process:
    for child in psutil.Process(launcher_pid).children(recursive=True):
        if "traincheck.sidecar" in " ".join(child.cmdline()):
            return child
    raise AssertionError("no sidecar child process found")


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
    # The job ran to its end; while no sidecar listened its events waited in its tracer's
    # backlog (never the job for the sidecar), replayed to the new one: resumed_after.
    assert "done in" in stdout
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


def step_durations(stream, steps: int) -> list[float]:
    """The job's own step durations (from its ``t=`` stamps) over its next ``steps`` lines."""
    stamps = []
    for _ in range(steps):
        line = stream.readline()
        assert line, "job output ended"
        stamps.append(float(re.search(r"t=([\d.]+)", line).group(1)))
    return [b - a for a, b in itertools.pairwise(stamps)]


def job_process(launcher_pid: int) -> psutil.Process:
    for child in psutil.Process(launcher_pid).children(recursive=True):
        if "e2e_slow_train.py" in " ".join(child.cmdline()):
            return child
    raise AssertionError("no job process found")


def test_stalled_sidecar_costs_the_job_nothing_and_drops_are_counted(
    env: dict[str, str], tmp_path: Path
) -> None:
    """SIGSTOP the sidecar for 600 steps. Robust under load: the job's own step-time
    *medians* are compared (a scheduling hiccup moves a mean, not a median), with
    generous slack; the bound is shown by counted drops (the backlog is 20 kB, far
    less than 600 steps of events) and by the job's memory not growing."""
    env = {**env, "TRAINCHECK_BACKLOG_BYTES": "20000"}
    job = python_cmd(SLOW_TRAIN, "--steps", "1000", "--sleep-s", "0.002", "--timestamps")
    with start([cli("traincheck-run"), "-o", str(tmp_path / "t"), "--", *job], env) as launcher:
        wait_for_line(launcher.stdout, "step 20 ")
        job_rss = job_process(launcher.pid).memory_info().rss
        before = statistics.median(step_durations(launcher.stdout, 150))
        sidecar = sidecar_of(launcher.pid)
        sidecar.suspend()
        try:
            # Stalled for 600 steps: more batches than ZeroMQ's queue and the backlog hold.
            during = statistics.median(step_durations(launcher.stdout, 600))
            rss_growth = job_process(launcher.pid).memory_info().rss - job_rss
        finally:
            sidecar.resume()
        _, stderr = launcher.communicate(timeout=90)
    assert launcher.returncode == 0, stderr
    message = f"median step {before * 1e3:.2f} ms before, {during * 1e3:.2f} ms stalled"
    assert during < 2 * before + 0.005, message
    assert rss_growth < 32 * 2**20, f"job memory grew {rss_growth / 2**20:.1f} MiB while stalled"
    dropped = re.search(r"dropped (\d+) events, (\d+) batches missing", stderr)
    assert dropped and int(dropped.group(1)) > 0, stderr
    # Evicted batches are counted once: dropped by the tracer, not also missing.
    assert int(dropped.group(2)) == 0, stderr


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
    assert result.stderr.count("cannot save the trace") == 1, result.stderr
    assert result.stderr.count("trace write error: File too large") == 1, result.stderr
    assert "Traceback" not in result.stderr
    stored = read_trace(trace)  # what fit is readable
    counters = manifest(trace)["counters"]
    assert stored.batches and counters["batches_lost"] > 0
    assert (
        sum(len(b.events) for b in stored.batches) + counters["events_lost"]
        == (counters["events_received"])
    )


IN_USER_NAMESPACE = ("unshare", "--user", "--map-root-user", "--mount")
"""Run as root of a user namespace with its own mounts: a tmpfs without privileges."""


def small_tmpfs_unavailable(tmp_path: Path) -> str | None:
    """Why a tmpfs cannot be mounted in a user namespace here, or None if it can."""
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        result = subprocess.run(
            [*IN_USER_NAMESPACE, "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0"', str(probe)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError as exc:
        return f"no unshare: {exc}"
    if result.returncode != 0:
        return f"no tmpfs in a user namespace here: {result.stderr.strip()[:120]}"
    return None


def test_a_full_tmpfs_costs_the_job_nothing_and_run_json_says_what_was_lost(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A real full filesystem: a 512 KiB tmpfs mounted in a user namespace (no root
    needed; skipped where unprivileged user namespaces are off, e.g. most
    containers -- the RLIMIT_FSIZE test above covers the same path there). The
    trace fills it; the job runs on, the sidecar says so once, counts every event
    it could not save, and still writes the final ``run.json`` (space reserved for
    it at the start). The namespace's mount vanishes with it, so the trace is
    copied out first."""
    reason = small_tmpfs_unavailable(tmp_path)
    if reason is not None:
        pytest.skip(reason)
    mount, copy = tmp_path / "small", tmp_path / "copy"
    mount.mkdir(mode=0o700)
    script = (
        'mount -t tmpfs -o size=512k,mode=0700 tmpfs "$0" || exit 99; '
        '"$@"; code=$?; cp -a "$0/trace" "$0.copy"; exit $code'
    )
    job = python_cmd(SLOW_TRAIN, "--steps", "400", "--sleep-s", "0")
    command = [cli("traincheck-run"), "-o", str(mount / "trace"), "--", *job]
    result = subprocess.run(
        [*IN_USER_NAMESPACE, "sh", "-c", script, str(mount), *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    Path(f"{mount}.copy").rename(copy)
    assert result.returncode == 0, result.stderr
    assert "done in" in result.stdout
    assert result.stderr.count("cannot save the trace") == 1, result.stderr
    assert "Traceback" not in result.stderr
    run_json = manifest(copy)
    assert run_json["status"] == "finished", run_json
    counters = run_json["counters"]
    assert counters["batches_lost"] > 0 and counters["events_lost"] > 0, counters
    assert counters["write_errors"] == [f"No space left on device ({mount / 'trace'})"]
    stored = read_trace(copy)
    assert stored.warnings == [] and stored.batches
    assert (
        sum(len(b.events) for b in stored.batches) + counters["events_lost"]
        == (counters["events_received"])
    )
    assert sorted(p.name for p in copy.glob(".run.json*")) == []  # no reserve, no temp


def test_corrupt_and_truncated_segments_lose_only_the_damage(
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
        if damage == "truncate":  # a torn end: everything before it
            assert stored.batches == whole[: len(stored.batches)]
        else:  # a flipped byte: only its own frame is lost, the reader resumes after it
            assert [b for b in whole if b in stored.batches] == stored.batches
            assert len(stored.batches) == len(whole) - 1
        assert len(stored.warnings) == 1
        check = run([cli("traincheck-check"), "-f", str(trace), "-i", str(invariants)], env)
        assert check.returncode in (0, 1), check.stderr
        assert "Traceback" not in check.stderr, check.stderr


def test_launcher_killed_the_sidecar_serves_the_job_to_its_end(
    env: dict[str, str], tmp_path: Path
) -> None:
    """SIGKILL on traincheck-run: the job runs on (it is in its own process group),
    and so must its trace: the sidecar keeps storing until the job ends, then says
    truthfully how the run ended (it used to leave ~5 s later, lose the tail, die on
    a broken pipe and mark the run killed)."""
    trace = tmp_path / "trace"
    launcher = subprocess.Popen(
        [
            cli("traincheck-run"),
            "-o",
            str(trace),
            "--",
            *python_cmd(SLOW_TRAIN, "--steps", "400", "--sleep-s", "0.03"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for_line(launcher.stdout, "step 5 ")
        sidecar = sidecar_of(launcher.pid)
        job = next(
            p
            for p in psutil.Process(launcher.pid).children()
            if "e2e_slow_train" in " ".join(p.cmdline())
        )
        launcher.kill()
        launcher.wait(timeout=30)
        job.wait(timeout=120)  # the job goes on to its end
        sidecar.wait(timeout=60)  # then the sidecar drains and stops by itself
    finally:
        launcher.kill()
    run_json = manifest(trace)
    assert run_json["status"] == "finished", run_json
    counters = run_json["counters"]
    assert counters["batches_missing"] == 0 and counters["events_dropped"] == 0, counters
    steps = [b for b in read_trace(trace).batches]
    assert steps and any(getattr(e, "step", 0) >= 399 for b in steps for e in b.events), (
        "the trace holds the job's last steps"
    )


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_pool_workers_that_exit_cleanly_leave_a_finished_run(
    env: dict[str, str], tmp_path: Path, start_method: str
) -> None:
    """Forked workers end with os._exit: without a goodbye of their own, a clean run
    read as killed ('the trace stops there')."""
    trace = tmp_path / "trace"
    result = subprocess.run(
        [
            cli("traincheck-run"),
            "-o",
            str(trace),
            "--",
            *python_cmd(SCRIPTS / "pool_workers.py", "--start-method", start_method),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("losses ")
    run_json = manifest(trace)
    producers = run_json["counters"]["producers"]
    assert len(producers) == 3, producers  # the job and its two workers
    assert all(p["run_end"] for p in producers), producers
    assert run_json["status"] == "finished"


def test_pool_workers_terminated_by_their_pool_are_reported_apart_from_the_job(
    env: dict[str, str], tmp_path: Path
) -> None:
    """``with Pool()`` terminates its workers (SIGTERM) when the block ends: they never
    say goodbye. The run is judged by the job's own process, which ended normally:
    ``finished``, with the vanished workers listed (was: ``killed``, "the trace stops
    there")."""
    trace = tmp_path / "trace"
    job = python_cmd(SCRIPTS / "pool_workers.py", "--with-block")
    result = subprocess.run(
        [cli("traincheck-run"), "-o", str(trace), "--", *job],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("losses ")
    run_json = manifest(trace)
    counters = run_json["counters"]
    producers = {p["pid"]: p for p in counters["producers"]}
    assert len(producers) == 3, producers  # the job and its two workers
    (job_pid,) = [pid for pid, p in producers.items() if p["ppid"] not in producers]
    workers = sorted(pid for pid in producers if pid != job_pid)
    assert all(producers[pid]["ppid"] == job_pid for pid in workers), producers
    assert producers[job_pid]["run_end"], producers
    silent = sorted(pid for pid in workers if not producers[pid]["run_end"])
    assert silent, "the pool's workers said goodbye: nothing here tests a terminated pool"
    assert run_json["status"] == "finished", run_json
    assert counters["workers_vanished"] == silent
    assert f"{len(silent)} worker process(es) ended without saying goodbye" in result.stderr
    assert "the trace stops there" not in result.stderr


def test_a_job_whose_own_process_is_killed_is_still_killed(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The other side of judging by the job's own process: when that process is
    SIGKILLed, the run is ``killed``."""
    trace = tmp_path / "trace"
    job = python_cmd(SLOW_TRAIN, "--steps", "100000", "--sleep-s", "0.01")
    with start([cli("traincheck-run"), "-o", str(trace), "--", *job], env) as launcher:
        wait_for_line(launcher.stdout, "step 5 ")
        job_process(launcher.pid).kill()
        _, stderr = launcher.communicate(timeout=60)
    assert launcher.returncode == 137, stderr
    run_json = manifest(trace)
    assert run_json["status"] == "killed", run_json
    assert run_json["counters"]["workers_vanished"] == []


def cover_invariants(path: Path, first: str, then: str, text: str) -> Path:
    """An invariants file of one relation: ``first`` is called before every ``then``."""
    invariants = pytest.importorskip("traincheck.analysis.invariants")
    file_io = pytest.importorskip("traincheck.analysis.invariants_file")
    inv = invariants.make_invariant(
        "FunctionCoverRelation",
        (invariants.APIParam(first), invariants.APIParam(then)),
        None,
        group="func_cover",
        text_description=text,
        num_positive_examples=10,
        num_negative_examples=0,
    )
    file_io.dump_invariants(invariants.InvariantSet((inv,)), path)
    return path


@pytest.mark.timeout(600)
def test_a_slow_live_check_costs_no_stored_event_and_misses_no_violation(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The live check sleeps after every batch (``TRAINCHECK_TEST_SLOW_CHECK_S``, a
    test-only slowdown of the checker thread), so it falls far behind a job whose
    every step violates an invariant (clip_grad_norm_ is never called). Storage
    follows the job anyway: every event the tracer sent is stored (its
    exit counters say how many), none dropped or missing; the check catches up after
    the job and its verdict equals an offline check of the stored trace. Before,
    storing waited for checking: the backlog at the drain outlasted its 5 s limit
    and the tail of the trace was lost."""
    invariants = cover_invariants(
        tmp_path / "inv.json",
        CLIP_GRAD_NORM,
        OPTIMIZER_STEP,
        "clip_grad_norm_ is called before every step",
    )
    trace = tmp_path / "trace"
    job = python_cmd(SLOW_TRAIN, "--steps", "100", "--sleep-s", "0.02")
    options = ["-o", str(trace), "-i", str(invariants), "--sidecar-timeout-s", "500"]
    result = subprocess.run(
        [cli("traincheck-run"), *options, "--", *job],
        capture_output=True,
        text=True,
        env={**env, SLOW_CHECK_ENV: "0.25"},
        timeout=560,
    )
    assert result.returncode == 0, result.stderr
    run_json = manifest(trace)
    assert run_json["status"] == "finished", run_json
    counters = run_json["counters"]
    stored = read_trace(trace)
    assert stored.warnings == []
    ends = [s.event for s in stored.events() if isinstance(s.event, RunEnd)]
    assert len(ends) == 1, ends  # the job's goodbye was stored
    # What the tracer sent in all, from the counters it wrote at exit (its RunEnd counts
    # only what had left before it, not a backlog flushed after it).
    (sent,), unreadable = TraceDir(trace).read_tracer_counters()
    assert unreadable == [] and sent.events_dropped == 0 and sent.batches_dropped == 0
    assert sum(len(b.events) for b in stored.batches) == sent.events_sent
    assert counters["batches_missing"] == 0 and counters["batches_lost"] == 0
    lag = counters["live_check"]
    assert lag["batches_checked"] == counters["batches_received"] == len(stored.batches)
    assert lag["events_unchecked"] == 0 and not lag["pending"], lag
    live = json.loads((trace / "live_check" / "violations_summary.json").read_text())
    offline_dir = tmp_path / "offline"
    offline_run = subprocess.run(
        [cli("traincheck-check"), "-f", str(trace), "-i", str(invariants), "-o", str(offline_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert offline_run.returncode == 1, offline_run.stderr
    offline = json.loads((offline_dir / "violations_summary.json").read_text())
    assert live["total_violations"] >= 100  # one per step at least
    assert counters["violations"] == live["total_violations"] == offline["total_violations"]
    assert live["first_violation_step"] == offline["first_violation_step"]
    assert [v["last_step"] for v in live["violations"]] == [
        v["last_step"] for v in offline["violations"]
    ]


PRODUCER = SCRIPTS / "producer_fake_job.py"
DRAIN_STALL_S = 10
"""``--sidecar-timeout-s`` of the drain tests: far above the checker's step (below),
far below what the check still has to do when the job ends."""
SLOW_CHECK_S = 0.2
CHECK_STEPS = 80


def slow_check_run(tmp_path: Path, exit_code: int = 0) -> tuple[list[str], Path, Path]:
    """A job that sends its ``CHECK_STEPS`` batches at once, each step violating an
    invariant, checked ``SLOW_CHECK_S`` per batch: most of the check is left for
    after the job, many times the drain's stall limit, advancing every batch."""
    invariants = cover_invariants(
        tmp_path / "inv.json", CLIP_GRAD_NORM, OPTIMIZER_STEP, "clip before every step"
    )
    trace = tmp_path / "trace"
    options = ["-o", str(trace), "-i", str(invariants), "--sidecar-timeout-s", str(DRAIN_STALL_S)]
    job = python_cmd(PRODUCER, "--steps", str(CHECK_STEPS), "--exit-code", str(exit_code))
    return [cli("traincheck-run"), *options, "--", *job], trace, invariants


def offline_verdict(trace: Path, invariants: Path, out: Path) -> dict:
    result = subprocess.run(
        [cli("traincheck-check"), "-f", str(trace), "-i", str(invariants), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr  # violations found
    return json.loads((out / "violations_summary.json").read_text())


@pytest.mark.timeout(300)
def test_the_launcher_waits_for_a_live_check_that_makes_progress(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The check still had many times the stall limit's worth of batches to go when
    the job ended (each batch takes at least ``SLOW_CHECK_S``); it said how far it
    was as it went, so the launcher waited for it: the run ends with its summary and
    a live verdict equal to an offline check's. Before, the limit was on the whole
    drain: the sidecar was stopped and run.json said ``sidecar_lost``."""
    command, trace, invariants = slow_check_run(tmp_path)
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**env, SLOW_CHECK_ENV: str(SLOW_CHECK_S)},
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    run_json = manifest(trace)
    assert run_json["status"] == "finished", run_json
    assert "live_check_stopped" not in run_json and "sidecar_lost" not in run_json
    lag = run_json["counters"]["live_check"]
    # What was left at the drain took longer than the stall limit, by the sleeps alone.
    assert lag["batches_behind_at_drain"] * SLOW_CHECK_S > DRAIN_STALL_S, lag
    assert not lag["pending"] and lag["batches_checked"] == run_json["counters"]["batches_received"]
    assert "finishing the live check: " in result.stderr
    live = json.loads((trace / "live_check" / "violations_summary.json").read_text())
    offline = offline_verdict(trace, invariants, tmp_path / "offline")
    assert live["total_violations"] >= CHECK_STEPS  # one per step at least
    assert run_json["counters"]["violations"] == live["total_violations"]
    assert live["total_violations"] == offline["total_violations"]
    assert [(v["invariant_id"], v["first_step"], v["last_step"]) for v in live["violations"]] == [
        (v["invariant_id"], v["first_step"], v["last_step"]) for v in offline["violations"]
    ]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["sidecar stopped", "ctrl-c"])
def test_a_live_check_given_up_leaves_a_complete_trace_that_says_so(
    env: dict[str, str], tmp_path: Path, how: str
) -> None:
    """While the check finishes after the job, the sidecar is SIGSTOPped (no progress
    comes: the launcher gives it up after the stall limit), or the user presses
    Ctrl-C (the launcher stops waiting). Either way the launcher exits with the job's
    code; the trace was complete before the check's last stretch and run.json says
    so: the run ``finished``, the live check stopped and why, and
    ``traincheck-check`` gives the verdict from the stored trace."""
    command, trace, invariants = slow_check_run(tmp_path, exit_code=3)
    with start(command, {**env, SLOW_CHECK_ENV: str(SLOW_CHECK_S)}) as launcher:
        wait_for_line(launcher.stderr, "finishing the live check: ", timeout_s=120)
        sidecar = sidecar_of(launcher.pid)
        if how == "ctrl-c":
            launcher.send_signal(signal.SIGINT)
        else:
            sidecar.suspend()
        try:
            _, stderr = launcher.communicate(timeout=120)
        finally:
            with contextlib.suppress(psutil.NoSuchProcess):
                sidecar.resume()
    assert launcher.returncode == 3, stderr  # the job's own code
    run_json = manifest(trace)
    assert run_json["status"] == "finished", run_json
    assert "sidecar_lost" not in run_json
    why = "was stopped by Ctrl-C" if how == "ctrl-c" else f"made no progress for {DRAIN_STALL_S} s"
    assert run_json["live_check_stopped"].startswith(why), run_json["live_check_stopped"]
    assert "while finishing the live check" in run_json["live_check_stopped"]
    counters = run_json["counters"]
    assert counters["live_check"]["pending"] is True
    assert not (trace / "live_check" / "violations_summary.json").exists()
    assert "the trace is complete" in stderr and "traincheck-check -f" in stderr
    (producer,) = counters["producers"]
    assert producer["run_end"] and counters["batches_missing"] == 0, counters
    stored = read_trace(trace)
    assert len(stored.batches) == counters["batches_received"] > CHECK_STEPS
    offline = offline_verdict(trace, invariants, tmp_path / "offline")
    assert offline["total_violations"] >= CHECK_STEPS
