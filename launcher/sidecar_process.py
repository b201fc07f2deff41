"""The launcher's handle on the sidecar process: start, handshake, drain.

The sidecar runs in its own session so a terminal Ctrl-C never reaches it (the
launcher decides when it stops). It reports on stdout with typed lines
(:mod:`traincheck.records`): ``ready`` when it can receive, or ``error`` when it
cannot run for a reason the user can fix; after a drain, ``progress`` while its
live check finishes, then ``summary``. Every wait for a line has a deadline: at
the end, one that moves on while the check advances. The launcher never imports
the sidecar's code.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from traincheck import environment
from traincheck.errors import UserError
from traincheck.records import (
    RecordError,
    SidecarFailed,
    SidecarLine,
    SidecarProgress,
    SidecarReady,
    SidecarSummary,
    decode_sidecar_line,
)


class SidecarError(UserError):
    """The sidecar could not be started (reported in one line, exit code 2)."""


class SidecarLineReader:
    """Reads the sidecar's typed lines from a pipe with a deadline, skipping anything
    else (a stray print is noise, not a protocol error)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._fd = stream.fileno()
        self._buffer = b""
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)
        self.eof = False

    def read(self, kinds: tuple[type[SidecarLine], ...], timeout_s: float) -> SidecarLine | None:
        """The next line that is one of ``kinds``; None on timeout or end of stream."""
        deadline = time.monotonic() + timeout_s
        while True:
            line = self._next_line(deadline)
            if line is None:
                return None
            with contextlib.suppress(RecordError):
                record = decode_sidecar_line(line)
                if isinstance(record, kinds):
                    return record

    def _next_line(self, deadline: float) -> bytes | None:
        while b"\n" not in self._buffer:
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(remaining):
                return None
            chunk = os.read(self._fd, 65536)
            if not chunk:
                self.eof = True
                if not self._buffer:
                    return None
                self._buffer += b"\n"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def close(self) -> None:
        self._selector.close()


def sidecar_environment() -> dict[str, str]:
    """The launcher's environment minus our tracer switches: the sidecar itself is
    never traced, even when traincheck-run runs inside a traced process."""
    env = {k: v for k, v in os.environ.items() if k not in environment.ALL}
    env[environment.TRAINCHECK_DISABLE] = "1"
    if environment.TRAINCHECK_DEBUG in os.environ:
        env[environment.TRAINCHECK_DEBUG] = os.environ[environment.TRAINCHECK_DEBUG]
    return env


class SidecarProcess:
    """A started sidecar; ``start`` returns once it said it is ready."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        assert process.stdout is not None
        self._reader = SidecarLineReader(process.stdout)

    @classmethod
    def start(
        cls,
        *,
        trace_dir: Path,
        endpoint: str,
        run_id: str,
        invariants: Path | None,
        command_file: Path | None,
        plan_file: Path | None,
        selective: bool,
        verbose: bool = False,
        timeout_s: float,
    ) -> SidecarProcess:
        """Start the sidecar and wait for its ready line; the sidecar parses the
        invariants, so a malformed file is a :class:`SidecarError` here, one line,
        before the job starts."""
        argv = [
            sys.executable,
            "-m",
            "traincheck.sidecar",
            "--trace-dir",
            str(trace_dir),
            "--endpoint",
            endpoint,
            "--run-id",
            run_id,
        ]
        if command_file is not None:
            argv += ["--command-file", str(command_file)]
        if invariants is not None:
            argv += ["--invariants", str(invariants)]
        if plan_file is not None:
            argv += ["--plan-file", str(plan_file)]
        if selective:
            argv.append("--selective")
        if verbose:
            argv.append("--verbose")
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=sidecar_environment(),
            start_new_session=True,
        )
        sidecar = cls(process)
        try:
            sidecar._wait_ready(timeout_s)
        except BaseException:
            sidecar.kill()
            raise
        return sidecar

    def _wait_ready(self, timeout_s: float) -> None:
        line = self._reader.read((SidecarReady, SidecarFailed), timeout_s)
        if isinstance(line, SidecarFailed):
            self.process.wait()
            raise SidecarError(line.message)
        if line is not None:
            return
        if self._reader.eof:
            code = self.process.wait()
            raise SidecarError(f"sidecar failed to start ({describe_exit(code)})")
        raise SidecarError(f"sidecar did not become ready within {timeout_s:g} s")

    def exit_code(self) -> int | None:
        """The sidecar's exit code if it has exited (negative: killed by a signal)."""
        return self.process.poll()

    def tell_job(self, pid: int) -> None:
        """Name the job: should we die without saying ``drain``, the sidecar serves it
        until it ends instead of stopping with us."""
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.write(f"job {pid}\n".encode())
            self.process.stdin.flush()

    def drain(
        self,
        stall_s: float,
        on_progress: Callable[[SidecarProgress], None] | None = None,
    ) -> SidecarSummary | None:
        """Ask for a drain and wait for the summary as long as the sidecar shows
        progress: ``stall_s`` after the request, and again after every ``progress``
        line that checked more events. A large invariants file can keep the live
        check busy long after the job; a sidecar that stops advancing (stopped,
        wedged) is given up ``stall_s`` after its last advance: None. ``on_progress``
        hears every progress line."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(b"drain\n")
            self.process.stdin.close()
        except (BrokenPipeError, OSError):
            return None
        deadline = time.monotonic() + stall_s
        progress: SidecarProgress | None = None
        while True:
            line = self._reader.read((SidecarSummary, SidecarProgress), deadline - time.monotonic())
            if isinstance(line, SidecarSummary):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=5)
                return line
            if not isinstance(line, SidecarProgress):
                return None
            if progress is None or line.events_checked > progress.events_checked:
                deadline = time.monotonic() + stall_s
            progress = line
            if on_progress is not None:
                on_progress(line)

    def kill(self) -> None:
        """Stop the sidecar now (its own process group) and reap it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self.close()

    def close(self) -> None:
        self._reader.close()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def describe_exit(code: int) -> str:
    """``exit code N`` or ``signal N`` (Popen reports a signal as -N)."""
    if code < 0:
        return f"signal {-code}"
    return f"exit code {code}"
