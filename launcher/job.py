"""The training job: its environment, its process group, its signals, its exit code.

The job runs in its own session (and so its own process group). A terminal Ctrl-C
therefore reaches the launcher only, and the launcher forwards it to the job's
whole group exactly once -- the same processes a terminal would have signalled.
A second Ctrl-C kills the group, for jobs that do not stop on the first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType

import traincheck
from traincheck import environment
from traincheck.errors import UserError

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def bootstrap_dir() -> Path:
    """The directory holding our ``sitecustomize.py`` (found without importing it)."""
    return Path(traincheck.__file__).resolve().parent / "bootstrap"


def job_environment(
    base: Mapping[str, str],
    *,
    endpoint: str,
    run_id: str,
    trace_dir: Path,
    plan_file: Path | None = None,
) -> dict[str, str]:
    """The job's environment: the user's, plus the bootstrap dir first on PYTHONPATH
    and the variables that arm and configure the tracer (``plan_file``: its plan)."""
    env = dict(base)
    boot = str(bootstrap_dir())
    existing = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = boot + os.pathsep + existing if existing else boot
    env[environment.TRAINCHECK_ENDPOINT] = endpoint
    env[environment.TRAINCHECK_RUN_ID] = run_id
    env[environment.TRAINCHECK_TRACE_DIR] = str(trace_dir)
    env[environment.TRAINCHECK_BOOTSTRAP_DIR] = boot
    env[environment.TRAINCHECK_LAUNCHER_PID] = str(os.getpid())  # we spawn the job
    if plan_file is not None:
        env[environment.TRAINCHECK_PLAN] = str(plan_file)
    return env


def exit_status(returncode: int) -> int:
    """A shell-style exit status: 128+N for a job killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


class SignalForwarder:
    """While installed, SIGINT/SIGTERM/SIGHUP go to the job's process group.

    Signals that arrive before the job exists are remembered and delivered as soon
    as it is attached, so there is no window in which Ctrl-C is lost.
    """

    def __init__(self, notify: Callable[[str], None]) -> None:
        self._notify = notify
        self._pgid: int | None = None
        self._pending: list[int] = []
        self._interrupts = 0
        self._previous: dict[int, object] = {}

    @property
    def killed_on_interrupt(self) -> bool:
        """True once a second Ctrl-C made us SIGKILL the job: the run ends as interrupted."""
        return self._interrupts >= 2

    def install(self) -> None:
        for signum in FORWARDED_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def attach(self, pgid: int) -> None:
        self._pgid = pgid
        pending, self._pending = self._pending, []
        for signum in pending:
            self._send(signum)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts >= 2:
                self._notify("second interrupt: killing the job")
                signum = signal.SIGKILL
        if self._pgid is None:
            self._pending.append(signum)
        else:
            self._send(signum)

    def _send(self, signum: int) -> None:
        assert self._pgid is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, signum)


def spawn_job(command: tuple[str, ...], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start the job with inherited stdio; its output goes straight to the user."""
    try:
        return subprocess.Popen(list(command), env=dict(env), start_new_session=True)
    except FileNotFoundError:
        raise UserError(f"command not found: {command[0]}") from None
    except PermissionError:
        raise UserError(f"command is not executable: {command[0]}") from None


def flush_std_streams() -> None:
    """Flush our own buffered output before the job writes to the same terminal."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
