"""Rerun every fault and bad input of issue 6 against real processes; print the table.

Each scenario runs the real ``traincheck-run`` / ``traincheck-attach`` / sidecar on a
small CPU training loop (``tests/integration/scripts/e2e_slow_train.py``), injects one
fault, and reports what happened to the training job (exit code, its own wall time
for the loop) and what the trace kept. The markdown table on stdout is what
``RELIABILITY.md`` holds; rerun it with::

    .venv/bin/python scripts/reliability.py > /tmp/table.md
    .venv/bin/python scripts/reliability.py --only disk_full_tmpfs pool_workers_terminated

``--only`` runs the named scenarios (``--list`` names them all). Scenarios that
need what the machine may not offer (root, unprivileged user namespaces) say so in
their row instead of failing.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SLOW_TRAIN = REPO / "tests" / "integration" / "scripts" / "e2e_slow_train.py"
STEPS, SLEEP_S = 300, 0.01


@dataclass
class Row:
    fault: str
    exit_code: str
    job_time: str
    kept: str


def environment(runtime_dir: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}
    return {**env, "XDG_RUNTIME_DIR": runtime_dir, **extra}


def job(steps: int = STEPS, sleep_s: float = SLEEP_S) -> list[str]:
    return [sys.executable, str(SLOW_TRAIN), "--steps", str(steps), "--sleep-s", str(sleep_s)]


def cli(name: str) -> str:
    return str(BIN / name)


def start(args: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs
    )


def wait_for_line(process: subprocess.Popen[str], needle: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if needle in line or not line:
            return


def sidecar_of(launcher_pid: int) -> psutil.Process:
    for child in psutil.Process(launcher_pid).children(recursive=True):
        if "traincheck.sidecar" in " ".join(child.cmdline()):
            return child
    raise RuntimeError("no sidecar found")


def job_time(stdout: str) -> str:
    match = re.search(r"done in ([\d.]+) s", stdout)
    return f"{float(match.group(1)):.2f} s" if match else "-"


def kept(trace: Path) -> str:
    """What the trace holds, from run.json and a full read."""
    from traincheck.sidecar.store import read_trace

    try:
        manifest = json.loads((trace / "run.json").read_text())
    except (OSError, ValueError):
        manifest = {}
    counters = manifest.get("counters", {})
    try:
        stored = read_trace(trace)
    except Exception as exc:  # a reader failure is itself a finding for the table
        return f"unreadable: {type(exc).__name__}: {exc}"
    steps = [e.event.step for e in stored.events() if hasattr(e.event, "step")]
    parts = [
        f"status `{manifest.get('status', '?')}`",
        f"{len(stored.batches)} batches readable, steps {min(steps, default='-')}"
        f"..{max(steps, default='-')}",
        f"dropped {counters.get('events_dropped', '?')} events",
        f"missing {counters.get('batches_missing', '?')} batches",
    ]
    if counters.get("batches_lost"):
        parts.append(
            f"{counters['batches_lost']} batches ({counters.get('events_lost', '?')} events) "
            "not saved"
        )
    if counters.get("workers_vanished"):
        parts.append(f"{len(counters['workers_vanished'])} worker(s) vanished, listed apart")
    lag = counters.get("live_check")
    if lag and lag.get("most_behind_batches", 0) > 1:
        parts.append(
            f"live check at most {lag['most_behind_batches']} batches behind "
            f"({lag.get('batches_behind_at_drain', 0)} when the trace was complete), "
            f"{lag['batches_from_disk']} read back from disk"
            + (", still pending when stopped" if lag.get("pending") else ", caught up")
        )
    if stored.warnings:
        parts.append(f"{len(stored.warnings)} reader warning(s)")
    if manifest.get("sessions"):
        parts.append(f"{len(manifest['sessions']) + 1} sidecar sessions")
    return "; ".join(parts)


def untraced(tmp: Path, env: dict[str, str]) -> Row:
    result = subprocess.run(job(), capture_output=True, text=True, env=env, timeout=120)
    return Row(
        "none (untraced, for step time)", str(result.returncode), job_time(result.stdout), "-"
    )


def baseline(tmp: Path, env: dict[str, str]) -> Row:
    trace = tmp / "t"
    result = subprocess.run(
        [cli("traincheck-run"), "-o", str(trace), "--", *job()],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return Row(
        "none (baseline, traced)", str(result.returncode), job_time(result.stdout), kept(trace)
    )


def sidecar_killed_then_attached(tmp: Path, env: dict[str, str]) -> Row:
    trace = tmp / "t"
    with start([cli("traincheck-run"), "-o", str(trace), "--", *job()], env) as launcher:
        wait_for_line(launcher, "step 30 ")
        sidecar_of(launcher.pid).kill()
        time.sleep(0.5)
        attach = start([cli("traincheck-attach"), str(launcher.pid)], env)
        stdout, _ = launcher.communicate(timeout=120)
        attach.communicate(timeout=30)
    return Row(
        "sidecar SIGKILLed at step 30, `traincheck-attach` 0.5 s later",
        str(launcher.returncode),
        job_time(stdout),
        kept(trace),
    )


def median_step_s(process: subprocess.Popen[str], steps: int) -> float:
    """Median of the job's own step durations (its ``t=`` stamps) over its next
    ``steps`` lines: what the job felt, not when the pipe delivered the lines."""
    assert process.stdout is not None
    stamps = []
    for _ in range(steps):
        match = re.search(r"t=([\d.]+)", process.stdout.readline())
        if match:
            stamps.append(float(match.group(1)))
    return statistics.median(b - a for a, b in itertools.pairwise(stamps))


def sidecar_stalled(tmp: Path, env: dict[str, str]) -> Row:
    trace = tmp / "t"
    env = {**env, "TRAINCHECK_BACKLOG_BYTES": "20000"}
    command = [*job(1000, 0.002), "--timestamps"]
    with start([cli("traincheck-run"), "-o", str(trace), "--", *command], env) as launcher:
        wait_for_line(launcher, "step 20 ")
        before = median_step_s(launcher, 150)
        sidecar = sidecar_of(launcher.pid)
        sidecar.suspend()
        try:  # stalled for 600 steps: more batches than ZeroMQ's queue and the backlog hold
            during = median_step_s(launcher, 600)
        finally:
            sidecar.resume()
        stdout, _ = launcher.communicate(timeout=120)
    return Row(
        "sidecar SIGSTOPped for 600 of 1000 steps (2 ms sleep; backlog bound 20 kB)",
        str(launcher.returncode),
        f"{job_time(stdout)}; median step {before * 1000:.1f} ms before, "
        f"{during * 1000:.1f} ms stalled",
        kept(trace),
    )


def job_killed(tmp: Path, env: dict[str, str]) -> Row:
    trace = tmp / "t"
    with start([cli("traincheck-run"), "-o", str(trace), "--", *job()], env) as launcher:
        wait_for_line(launcher, "step 50 ")
        for child in psutil.Process(launcher.pid).children(recursive=True):
            if str(SLOW_TRAIN) in " ".join(child.cmdline()):
                child.kill()
        launcher.communicate(timeout=120)
    return Row(
        "training job SIGKILLed at step 50", str(launcher.returncode), "- (killed)", kept(trace)
    )


def disk_full(tmp: Path, env: dict[str, str]) -> Row:
    trace = tmp / "t"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    result = subprocess.run(
        [cli("traincheck-run"), "-o", str(trace), "--", *job()],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        preexec_fn=limit,
    )
    said = "said `cannot save the trace`" if "cannot save the trace" in result.stderr else "SILENT"
    return Row(
        "disk full (RLIMIT_FSIZE 64 KiB on launcher, sidecar, job)",
        str(result.returncode),
        job_time(result.stdout),
        f"{kept(trace)}; {said}",
    )


def interrupted(times: int) -> Callable[[Path, dict[str, str]], Row]:
    def scenario(tmp: Path, env: dict[str, str]) -> Row:
        trace = tmp / "t"
        # A loop that ignores the first Ctrl-C only when asked twice: the script's own
        # KeyboardInterrupt ends it on the first.
        with start([cli("traincheck-run"), "-o", str(trace), "--", *job()], env) as launcher:
            wait_for_line(launcher, "step 30 ")
            for _ in range(times):
                launcher.send_signal(signal.SIGINT)
                time.sleep(0.05)
            launcher.communicate(timeout=120)
        return Row(
            f"SIGINT x{times} on `traincheck-run`", str(launcher.returncode), "-", kept(trace)
        )

    return scenario


def detached_detach_reattach(tmp: Path, env: dict[str, str]) -> Row:
    trace = tmp / "t"
    command = job(600)  # long enough to still run when the second attach connects
    with start([cli("traincheck-run"), "--detached", "-o", str(trace), "--", *command], env) as run:
        wait_for_line(run, "step 30 ")
        first = start([cli("traincheck-attach"), str(run.pid)], env)
        time.sleep(2)
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)
        time.sleep(0.5)
        subprocess.run(
            [cli("traincheck-attach"), str(run.pid)], capture_output=True, env=env, timeout=120
        )
        stdout, _ = run.communicate(timeout=120)
    return Row(
        "`--detached` (600 steps), attach at step 30, Ctrl-C after 2 s (detach), attach again",
        str(run.returncode),
        job_time(stdout),
        kept(trace),
    )


def damaged_segment(how: str) -> Callable[[Path, dict[str, str]], Row]:
    def scenario(tmp: Path, env: dict[str, str]) -> Row:
        trace = tmp / "t"
        subprocess.run(
            [cli("traincheck-run"), "-o", str(trace), "--", *job(60, 0)],
            capture_output=True,
            env=env,
            timeout=120,
        )
        (segment,) = trace.glob("segment-*.tcs")
        data = bytearray(segment.read_bytes())
        if how == "truncated":
            data = data[: len(data) * 2 // 3]
        else:
            data[len(data) // 2] ^= 0xFF
        segment.write_bytes(bytes(data))
        return Row(f"trace segment {how} after the run (reader)", "-", "-", kept(trace))

    return scenario


def hostile_messages(tmp: Path, env: dict[str, str]) -> Row:
    """Garbage, another schema version and another run id sent to a live sidecar."""
    import zmq

    from traincheck.events import SCHEMA_VERSION, Batch
    from traincheck.wire import encode_batch

    trace = tmp / "t"
    with start([cli("traincheck-run"), "-o", str(trace), "--", *job()], env) as launcher:
        wait_for_line(launcher, "step 10 ")
        endpoint = json.loads((trace / "run.json").read_text())["endpoint"]
        context = zmq.Context()
        sock = context.socket(zmq.PUSH)
        sock.connect(endpoint)
        for message in (
            b"\x00garbage",
            b"\x95\xa3abc",
            encode_batch(Batch(SCHEMA_VERSION + 1, "x", 1, 0, 0, 0, [])),
            encode_batch(Batch(SCHEMA_VERSION, "another-run", 1, 0, 0, 0, [])),
        ):
            sock.send(message)
        sock.close(linger=1000)
        context.term()
        stdout, stderr = launcher.communicate(timeout=120)
    rejected = re.search(r"(\d+) rejected messages", stderr)
    return Row(
        "4 hostile messages (garbage, bad utf-8, schema v2, other run id) to a live sidecar",
        str(launcher.returncode),
        job_time(stdout),
        f"{kept(trace)}; {rejected.group(1) if rejected else '?'} rejected and counted",
    )


def bad_invariants(kind: str) -> Callable[[Path, dict[str, str]], Row]:
    def scenario(tmp: Path, env: dict[str, str]) -> Row:
        path = tmp / "inv.json"
        marker = tmp / "pwned"
        code = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')"
        if kind == "code in every field":
            path.write_text(
                json.dumps(
                    {
                        "format": "traincheck-invariants",
                        "format_version": 1,
                        "invariants": [
                            {
                                "relation": code,
                                "params": [{"param_type": code}],
                                "precondition": code,
                                "text_description": code,
                            }
                        ],
                    }
                )
            )
        else:
            path.write_text("[" * 200_000 + "]" * 200_000)
        result = subprocess.run(
            [cli("traincheck-run"), "-i", str(path), "-o", str(tmp / "t"), "--", *job(5, 0)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        lines = result.stderr.strip().splitlines()
        said = lines[0][:90] if len(lines) == 1 else f"{len(lines)} lines"
        ran = "CODE RAN" if marker.exists() else "no code ran"
        return Row(
            f"invariants file: {kind}",
            str(result.returncode),
            "- (refused before start)",
            f"{ran}; one line: `{said}`",
        )

    return scenario


def foreign_process(tmp: Path, env: dict[str, str]) -> Row:
    if os.geteuid() != 0:
        return Row("attach to another user's process", "-", "-", "skipped (needs root)")
    with subprocess.Popen(["sleep", "30"], user=65534) as other:
        result = subprocess.run(
            [cli("traincheck-attach"), str(other.pid)],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        other.kill()
    return Row(
        "`traincheck-attach` to another user's process",
        f"attach: {result.returncode}",
        "-",
        result.stderr.strip()[:100],
    )


def stored_vs_sent(trace: Path) -> str:
    """Events stored against what the job's tracers sent (their exit counters files,
    which count the backlog flushed at exit too; a ``RunEnd`` counts only what left
    before it)."""
    from traincheck.sidecar.store import read_trace
    from traincheck.tracedir import TraceDir

    try:
        stored = read_trace(trace)
    except Exception as exc:
        return f"unreadable: {exc}"
    total = sum(len(b.events) for b in stored.batches)
    counters, _ = TraceDir(trace).read_tracer_counters()
    if not counters:
        return f"{total} events stored; no tracer counters"
    sent = sum(c.events_sent for c in counters)
    return f"{total} of {sent} events sent stored"


def live_verdict(trace: Path) -> str:
    try:
        summary = json.loads((trace / "live_check" / "violations_summary.json").read_text())
    except (OSError, ValueError):
        return "no live verdict written"
    return f"live check: {summary.get('total_violations', '?')} violations"


def launcher_killed(tmp: Path, env: dict[str, str]) -> Row:
    trace = tmp / "t"
    with start([cli("traincheck-run"), "-o", str(trace), "--", *job()], env) as launcher:
        wait_for_line(launcher, "step 30 ")
        sidecar = sidecar_of(launcher.pid)
        job_process = next(
            child
            for child in psutil.Process(launcher.pid).children(recursive=True)
            if str(SLOW_TRAIN) in " ".join(child.cmdline())
        )
        launcher.kill()
        launcher.wait(timeout=30)  # the job keeps our pipes open: no communicate yet
        job_process.wait(timeout=120)  # not our child: its code is not ours to read
        sidecar.wait(timeout=120)  # it serves the job to its end, then drains
    return Row(
        "`traincheck-run` SIGKILLed at step 30 (the job runs on)",
        "launcher: -9",
        "-",
        kept(trace),
    )


def disk_full_tmpfs(tmp: Path, env: dict[str, str]) -> Row:
    """A real full filesystem: a 512 KiB tmpfs in a user namespace (no root needed)."""
    mount = tmp / "small"
    mount.mkdir(mode=0o700)
    script = (
        'mount -t tmpfs -o size=512k,mode=0700 tmpfs "$0" || exit 99; '
        '"$@"; code=$?; cp -a "$0/t" "$0.copy"; exit $code'
    )
    command = [cli("traincheck-run"), "-o", str(mount / "t"), "--", *job()]
    try:
        result = subprocess.run(
            [
                "unshare",
                "--user",
                "--map-root-user",
                "--mount",
                "sh",
                "-c",
                script,
                str(mount),
                *command,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    except OSError as exc:
        return Row("disk full (a real 512 KiB tmpfs)", "-", "-", f"skipped: {exc}")
    if result.returncode == 99:
        return Row("disk full (a real 512 KiB tmpfs)", "-", "-", "skipped: no user namespaces")
    said = result.stderr.count("cannot save the trace")
    return Row(
        "disk full (a real 512 KiB tmpfs in a user namespace)",
        str(result.returncode),
        job_time(result.stdout),
        f"{kept(Path(f'{mount}.copy'))}; said `cannot save the trace` {said}x",
    )


def inferred_invariants(tmp: Path, env: dict[str, str], count: int) -> Path:
    """Invariants inferred from a healthy run, copied (distinct ids) up to ``count``."""
    healthy = tmp / "healthy"
    subprocess.run(
        [cli("traincheck-run"), "-o", str(healthy), "--", *job(30, 0)],
        capture_output=True,
        env=env,
        timeout=300,
        check=True,
    )
    learned = tmp / "learned.json"
    subprocess.run(
        [cli("traincheck-infer"), "-f", str(healthy), "-o", str(learned)],
        capture_output=True,
        env=env,
        timeout=600,
        check=True,
    )
    data = json.loads(learned.read_text())
    base = data["invariants"]
    copies = []
    for i in range(count):
        copy = dict(base[i % len(base)])
        copy["hints"] = {**copy.get("hints", {}), "replica": i // len(base)}
        copy.pop("id", None)
        copies.append(copy)
    data["invariants"] = copies
    path = tmp / f"inv-{count}.json"
    path.write_text(json.dumps(data))
    return path


def many_invariants(count: int) -> Callable[[Path, dict[str, str]], Row]:
    def scenario(tmp: Path, env: dict[str, str]) -> Row:
        invariants = inferred_invariants(tmp, env, count)
        trace = tmp / "t"
        options = ["-o", str(trace), "-i", str(invariants), "--sidecar-timeout-s", "120"]
        started = time.monotonic()
        result = subprocess.run(
            [cli("traincheck-run"), *options, "--", *job(STEPS, 0)],
            capture_output=True,
            text=True,
            env=env,
            timeout=3600,
        )
        elapsed = time.monotonic() - started
        cut = re.search(
            r"sidecar ((sent no summary|made no progress|was stopped).*)", result.stderr
        )
        said = result.stderr.count("finishing the live check: ")
        return Row(
            f"{count:,} invariants checked live, job at full speed (300 steps, no sleep; "
            "sidecar start limit and drain stall limit 120 s)",
            str(result.returncode),
            job_time(result.stdout),
            f"{kept(trace)}; {stored_vs_sent(trace)}; "
            + (f"launcher stopped the sidecar: {cut.group(1)}" if cut else live_verdict(trace))
            + f"; {said} progress line(s) while the check finished; launcher ran {elapsed:.0f} s",
        )

    return scenario


def slow_check_switch(tmp: Path, env: dict[str, str]) -> Row:
    """The test-only switch: the checker sleeps 0.25 s per batch."""
    invariants = inferred_invariants(tmp, env, 1)
    trace = tmp / "t"
    result = subprocess.run(
        [
            cli("traincheck-run"),
            "-o",
            str(trace),
            "-i",
            str(invariants),
            "--sidecar-timeout-s",
            "600",
            "--",
            *job(100, 0.02),
        ],
        capture_output=True,
        text=True,
        env={**env, "TRAINCHECK_TEST_SLOW_CHECK_S": "0.25"},
        timeout=900,
    )
    return Row(
        "live check slowed to 0.25 s per batch (`TRAINCHECK_TEST_SLOW_CHECK_S`, 100 steps)",
        str(result.returncode),
        job_time(result.stdout),
        f"{kept(trace)}; {stored_vs_sent(trace)}; {live_verdict(trace)}",
    )


def pool_workers(how: str) -> Callable[[Path, dict[str, str]], Row]:
    def scenario(tmp: Path, env: dict[str, str]) -> Row:
        trace = tmp / "t"
        script = REPO / "tests" / "integration" / "scripts" / "pool_workers.py"
        extra = ["--with-block"] if how == "terminated" else []
        result = subprocess.run(
            [cli("traincheck-run"), "-o", str(trace), "--", sys.executable, str(script), *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        what = (
            "`with Pool(2)`, one worker busy in a task: terminated (SIGTERM) at the block's end"
            if how == "terminated"
            else "`Pool(2)` closed and joined: workers exit cleanly"
        )
        return Row(f"forked {what}", str(result.returncode), "-", kept(trace))

    return scenario


def planted_directory(tmp: Path, env: dict[str, str]) -> Row:
    """Another user created ``$TMPDIR/traincheck-<uid>`` (XDG_RUNTIME_DIR unset)."""
    if os.geteuid() != 0:
        return Row("planted per-user directory of another user", "-", "-", "skipped (needs root)")
    base = tmp / "tmpdir"
    base.mkdir(mode=0o755)
    planted = base / f"traincheck-{os.getuid()}"
    planted.mkdir(mode=0o777)
    os.chown(planted, 65534, 65534)
    env = {k: v for k, v in env.items() if k != "XDG_RUNTIME_DIR"} | {"TMPDIR": str(base)}
    trace = tmp / "t"
    result = subprocess.run(
        [cli("traincheck-run"), "-o", str(trace), "--", *job(30, 0)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    used = "nothing written there" if not any(planted.iterdir()) else "WROTE IN IT"
    return Row(
        "another user planted `$TMPDIR/traincheck-<uid>` (XDG_RUNTIME_DIR unset)",
        str(result.returncode),
        job_time(result.stdout),
        f"{kept(trace)}; {used}",
    )


def hostile_text(tmp: Path, env: dict[str, str]) -> Row:
    """Terminal escapes in an invariant's description, violated live."""
    invariants = tmp / "inv.json"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from traincheck.analysis import invariants as i, invariants_file as f\n"
            "inv = i.make_invariant('FunctionCoverRelation', (i.APIParam("
            "'torch.nn.utils.clip_grad_norm_'), i.APIParam('torch.optim.Optimizer.step')),"
            " None, group='func_cover', text_description='\\x1b]0;pwned\\x07\\x1b[2J"
            "clip before step', num_positive_examples=10, num_negative_examples=0)\n"
            "f.dump_invariants(i.InvariantSet((inv,)), sys.argv[1])",
            str(invariants),
        ],
        check=True,
        env=env,
        timeout=120,
    )
    trace = tmp / "t"
    result = subprocess.run(
        [
            cli("traincheck-run"),
            "-o",
            str(trace),
            "-i",
            str(invariants),
            "--verbose",
            "--",
            *job(10, 0),
        ],
        capture_output=True,
        env=env,
        timeout=120,
    )
    raw = b"\x1b" in result.stderr
    if b"clip before step" not in result.stderr:
        return Row("invariant description with escapes", str(result.returncode), "-", "NO ALERT")
    return Row(
        "invariant description with OSC/ANSI escapes (set title, clear screen), violated live",
        str(result.returncode),
        "-",
        "RAW ESCAPES PRINTED"
        if raw
        else "printed as visible escapes; no control byte reached the terminal",
    )


LONG_RUN_STEPS = (250, 2500)


def peak_rss_mib(args: list[str], env: dict[str, str]) -> str:
    """Peak resident memory of one command run to its end (its ``ru_maxrss``, from
    ``wait4``), or how it failed."""
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):  # traincheck-check: 1 = violations found
        return f"exit {process.returncode}"
    return f"{usage.ru_maxrss / 1024:.0f}"


def traced_with_sidecar_peak(trace: Path, steps: int, env: dict[str, str]) -> tuple[int, str, str]:
    """Trace ``steps`` steps at full speed: the launcher's exit code and stdout, and the
    sidecar's peak RSS in MiB (its VmHWM, the kernel's own peak, read while it runs)."""
    peak_kib = 0
    with start([cli("traincheck-run"), "-o", str(trace), "--", *job(steps, 0)], env) as launcher:
        while launcher.poll() is None:
            for child in psutil.Process(launcher.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error, OSError, StopIteration):
                    if "traincheck.sidecar" in " ".join(child.cmdline()):
                        status = Path(f"/proc/{child.pid}/status").read_text().splitlines()
                        hwm = next(line for line in status if line.startswith("VmHWM"))
                        peak_kib = max(peak_kib, int(hwm.split()[1]))
            time.sleep(0.2)
        stdout, _ = launcher.communicate()
    return launcher.returncode, stdout, f"{peak_kib / 1024:.0f}"


def long_run(tmp: Path, env: dict[str, str]) -> Row:
    """The same loop traced 10x longer: the sidecar, and offline ``traincheck-infer`` and
    ``traincheck-check`` of the trace, hold the same memory (streamed, never the trace)."""
    invariants = inferred_invariants(tmp, env, 1)
    figures: dict[str, list[str]] = {"trace": [], "sidecar": [], "infer": [], "check": []}
    code, stdout = 0, ""
    for steps in LONG_RUN_STEPS:
        trace = tmp / f"t{steps}"
        code, stdout, sidecar = traced_with_sidecar_peak(trace, steps, env)
        size = sum(p.stat().st_size for p in trace.glob("*.tcs")) / 2**20
        figures["trace"].append(f"{size:.1f}")
        figures["sidecar"].append(sidecar)
        infer = [cli("traincheck-infer"), "-f", str(trace), "-o", str(tmp / "inferred.json")]
        figures["infer"].append(peak_rss_mib(infer, env))
        check = [cli("traincheck-check"), "-f", str(trace), "-i", str(invariants)]
        figures["check"].append(peak_rss_mib([*check, "-o", str(tmp / f"c{steps}")], env))
    short, long = LONG_RUN_STEPS
    said = "; ".join(
        f"{name}{'' if name == 'trace' else ' peak RSS'} {a} -> {b} MiB"
        for name, (a, b) in figures.items()
    )
    return Row(
        f"long run (memory flat): {long:,} steps vs {short:,}, no sleep (sidecar without "
        "invariants; then `traincheck-infer` and `traincheck-check` of each trace)",
        str(code),
        job_time(stdout),
        f"{kept(tmp / f't{long}')}; {said}",
    )


SCENARIOS = [
    untraced,
    baseline,
    sidecar_killed_then_attached,
    sidecar_stalled,
    job_killed,
    disk_full,
    interrupted(1),
    interrupted(2),
    detached_detach_reattach,
    damaged_segment("truncated"),
    damaged_segment("with one flipped byte"),
    hostile_messages,
    bad_invariants("code in every field"),
    bad_invariants("nested 200k deep"),
    foreign_process,
    launcher_killed,
    disk_full_tmpfs,
    slow_check_switch,
    many_invariants(2040),
    many_invariants(100_000),
    pool_workers("clean"),
    pool_workers("terminated"),
    planted_directory,
    hostile_text,
    long_run,
]


def scenario_name(scenario: Callable[[Path, dict[str, str]], Row]) -> str:
    """``disk_full``, or for a parametrised one its factory and argument."""
    name = scenario.__qualname__.split(".")[0]
    cell = scenario.__closure__[0].cell_contents if scenario.__closure__ else None
    return f"{name}:{cell}" if cell is not None else name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these scenarios")
    parser.add_argument("--list", action="store_true", help="name every scenario and exit")
    args = parser.parse_args()
    names = [scenario_name(s) for s in SCENARIOS]
    if args.list:
        print("\n".join(names))
        return 0
    unknown = set(args.only or []) - set(names) - {n.split(":")[0] for n in names}
    if unknown:
        parser.error(f"no such scenario: {', '.join(sorted(unknown))} (see --list)")
    chosen = [
        s
        for s, n in zip(SCENARIOS, names, strict=True)
        if not args.only or n in args.only or n.split(":")[0] in args.only
    ]
    print("| fault or bad input | job exit code | job loop time | what was kept / said |")
    print("|---|---|---|---|")
    for scenario in chosen:
        tmp = Path(tempfile.mkdtemp(prefix="tc-rel-"))
        os.chmod(tmp, 0o700)
        try:
            row = scenario(tmp, environment(str(tmp)))
        except Exception as exc:
            row = Row(scenario.__name__, "-", "-", f"SCENARIO FAILED: {type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"| {row.fault} | {row.exit_code} | {row.job_time} | {row.kept} |", flush=True)
    print(
        f"\nTraining loop: {STEPS} steps, {SLEEP_S} s sleep per step "
        f"(`{SLOW_TRAIN.relative_to(REPO)}`)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
