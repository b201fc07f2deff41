"""traincheck-run end to end with a fake traced job: real processes, sockets, signals."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_attach import wait_for

from traincheck import environment
from traincheck.sidecar.store import read_trace

PRODUCER = Path(__file__).parent / "scripts" / "producer_fake_job.py"
LAUNCHER = [sys.executable, "-m", "traincheck.launcher.cli"]
FAKE_JOB_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")},
    # The fake job is the only producer: keep the real tracer (armed by the
    # bootstrap on PYTHONPATH) out of it.
    environment.TRAINCHECK_DISABLE: "1",
}


class LauncherRun:
    """traincheck-run in its own session (like a shell job), output collected live."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [*LAUNCHER, *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=FAKE_JOB_ENV,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._collect, args=(self.process.stdout, self.stdout)),
            threading.Thread(target=self._collect, args=(self.process.stderr, self.stderr)),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _collect(stream, lines: list[str]) -> None:  # type: ignore[no-untyped-def]
        for raw in stream:
            lines.append(raw.decode(errors="replace"))

    def wait_for_stdout(self, text: str, timeout_s: float = 30) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.stdout):
                if text in line:
                    return line
            if self.process.poll() is not None and not any(t.is_alive() for t in self._threads):
                break
            time.sleep(0.02)
        self.kill()
        pytest.fail(f"no {text!r} on stdout; {self.dump()}")

    def finish(self, timeout_s: float = 60) -> int:
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"traincheck-run hung; {self.dump()}")
        for thread in self._threads:
            thread.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def dump(self) -> str:
        return f"stdout:\n{''.join(self.stdout)}\nstderr:\n{''.join(self.stderr)}"

    @property
    def err(self) -> str:
        return "".join(self.stderr)

    @property
    def out(self) -> str:
        return "".join(self.stdout)


def launch(tmp_path: Path, *producer_args: str, options: tuple[str, ...] = ()) -> LauncherRun:
    out = tmp_path / "trace"
    args = ["--output-dir", str(out), *options, "--", sys.executable, str(PRODUCER)]
    return LauncherRun([*args, *producer_args], cwd=tmp_path)


def manifest(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "trace" / "run.json").read_text())


def test_trace_holds_every_batch_and_output_passes_through(tmp_path: Path) -> None:
    run = launch(tmp_path, "--steps", "3")
    assert run.finish() == 0, run.dump()
    assert run.stdout[1:] == [f"fake job step {i}\n" for i in range(3)] + ["fake job done\n"]
    trace = read_trace(tmp_path / "trace")
    assert trace.warnings == []
    assert [b.seq for b in trace.batches] == [0, 1, 2, 3, 4]
    kinds = [type(e.event).__name__ for e in trace.events()]
    assert kinds[0] == "RunStart" and kinds[-1] == "RunEnd" and len(kinds) == 17
    assert trace.manifest.status == "finished"
    assert trace.manifest.command[-2:] == ["--steps", "3"]
    assert "received 17 events in 5 batches from 1 process" in run.err
    assert f"trace: {tmp_path / 'trace'}" in run.err
    assert not Path(trace.manifest.endpoint.removeprefix("ipc://")).parent.exists()
    assert len(trace.to_frame()) == 17


@pytest.mark.parametrize("code", [3, 0])
def test_exit_code_propagates(tmp_path: Path, code: int) -> None:
    run = launch(tmp_path, "--exit-code", str(code), options=("--fail-on-violation",))
    assert run.finish() == code, run.dump()


def test_killed_by_signal_is_128_plus_n(tmp_path: Path) -> None:
    code = "import os, signal; print('bye', flush=True); os.kill(os.getpid(), signal.SIGTERM)"
    run = LauncherRun(["-o", str(tmp_path / "t"), sys.executable, "-c", code], cwd=tmp_path)
    assert run.finish() == 128 + signal.SIGTERM, run.dump()
    assert run.out == "bye\n"


def test_default_output_dir_is_named_after_the_script(tmp_path: Path) -> None:
    run = LauncherRun([sys.executable, str(PRODUCER), "--steps", "1"], cwd=tmp_path)
    assert run.finish() == 0, run.dump()
    (made,) = tmp_path.glob("traincheck_run_producer_fake_job_*")
    assert read_trace(made).manifest.status == "finished"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no command given"),
        (["--"], "no command given"),
        ([sys.executable, "no_such_script.py"], "script not found: no_such_script.py"),
        (["--invariants", "bad.json", sys.executable, str(PRODUCER)], "bad.json"),
        (["--invariants", "missing.json", sys.executable, str(PRODUCER)], "not found"),
        (["-o", "full", sys.executable, str(PRODUCER)], "not empty"),
        (["--sidecar-timeout-s", "x", sys.executable, str(PRODUCER)], "invalid float"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = subprocess.run(
        [*LAUNCHER, *args], cwd=tmp_path, capture_output=True, timeout=60, env=FAKE_JOB_ENV
    )
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("traincheck-run: error: ")
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.glob("traincheck_run_*")), "nothing is created on a user error"


def test_help_documents_every_option(tmp_path: Path) -> None:
    result = subprocess.run([*LAUNCHER, "--help"], capture_output=True, timeout=60)
    text = result.stdout.decode()
    assert result.returncode == 0
    for option in ("--output-dir", "--invariants", "--sidecar-timeout-s", "--fail-on-violation"):
        assert option in text


def test_run_directory_is_private_and_removed(tmp_path: Path) -> None:
    go = tmp_path / "go"
    run = launch(tmp_path, "--wait-file", str(go))
    run.wait_for_stdout("waiting for file")
    sock = Path(manifest(tmp_path)["endpoint"].removeprefix("ipc://"))
    try:
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(sock.parent.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(sock.stat().st_mode) & 0o077 == 0
        assert len(str(sock)) < 100
    finally:
        go.touch()
    assert run.finish() == 0, run.dump()
    assert not sock.parent.exists()


def test_sidecar_killed_mid_run(tmp_path: Path) -> None:
    go = tmp_path / "go"
    run = launch(tmp_path, "--wait-file", str(go), "--after-wait-steps", "50", "--exit-code", "3")
    run.wait_for_stdout("waiting for file")
    # Kill the sidecar once it holds some of the job's batches (the tracer sends what
    # it queued on its own timer: right after the job's line, nothing may be stored yet).
    wait_for(lambda: len(read_trace(tmp_path / "trace").batches) >= 1, 60, "batches stored")
    os.kill(manifest(tmp_path)["sidecar_pid"], signal.SIGKILL)
    wait_for(lambda: "sidecar exited unexpectedly" in run.err, 60, "the launcher noticed")
    go.touch()
    # A tracer that waited for its lost sidecar would hang the job: run.finish() times
    # out then. How fast the job ends is not asserted (a loaded machine decides that).
    assert run.finish() == 3, run.dump()
    assert "fake job step 52" in run.out and "fake job done" in run.out
    assert "sidecar exited unexpectedly (signal 9)" in run.err
    assert "tracer counters from 1 process" in run.err
    trace = read_trace(tmp_path / "trace")
    assert len(trace.batches) >= 1 and trace.manifest.status == "sidecar_lost"
    assert trace.manifest.tracer_counters.processes == 1


def test_job_killed_leaves_a_readable_trace(tmp_path: Path) -> None:
    run = launch(tmp_path, "--steps", "2", "--no-run-end")
    run.wait_for_stdout("waiting for signal")
    pid = int(re.search(r"pid=(\d+)", run.out).group(1))  # type: ignore[union-attr]
    # The job has sent its last batch; kill it once the sidecar holds it (a batch
    # still in the job's own ZeroMQ queue dies with the job, and is counted missing).
    wait_for(lambda: len(read_trace(tmp_path / "trace").batches) == 3, 60, "batches stored")
    os.kill(pid, signal.SIGKILL)
    assert run.finish() == 128 + signal.SIGKILL, run.dump()
    trace = read_trace(tmp_path / "trace")
    assert trace.warnings == [] and [b.seq for b in trace.batches] == [0, 1, 2]
    assert trace.manifest.status == "killed"
    assert "without saying goodbye" in run.err


def test_ctrl_c_reaches_the_job_once_and_exits_130(tmp_path: Path) -> None:
    run = launch(tmp_path, "--wait-signal", "--on-sigint", "report")
    run.wait_for_stdout("waiting for signal")
    os.killpg(run.process.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    assert run.finish() == 130, run.dump()
    assert run.out.count("fake job got SIGINT") == 1
    assert "fake job done" not in run.out
    assert manifest(tmp_path)["status"] == "killed"


def test_second_ctrl_c_kills_the_job(tmp_path: Path) -> None:
    run = launch(tmp_path, "--wait-signal", "--on-sigint", "ignore")
    run.wait_for_stdout("waiting for signal")
    os.killpg(run.process.pid, signal.SIGINT)
    run.wait_for_stdout("got SIGINT")
    os.killpg(run.process.pid, signal.SIGINT)
    assert run.finish() == 130, run.dump()  # interrupted by the user, like one Ctrl-C
    assert "second interrupt" in run.err
    assert "fake job done" not in run.out


def test_sigterm_to_launcher_is_forwarded(tmp_path: Path) -> None:
    run = launch(tmp_path, "--wait-signal")
    run.wait_for_stdout("waiting for signal")
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 128 + signal.SIGTERM, run.dump()
