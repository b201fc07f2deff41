"""The launcher's wait for the sidecar after the job: drain, progress, Ctrl-C.

A live check with a large invariants file can still be busy long after the job
ended; the trace is complete by then (the sidecar wrote ``run.json`` with
``live_check.pending`` first). So the launcher does not wait a fixed time: it
waits while the sidecar's ``progress`` lines show the check advancing, and gives
up ``--sidecar-timeout-s`` after the last advance. Meanwhile it says how far the
check is, every few seconds, and the first Ctrl-C stops the wait at once: the
launcher then records why and exits with the job's code, leaving the verdict to
``traincheck-check``.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from types import FrameType

from traincheck.launcher.sidecar_process import SidecarProcess, describe_exit
from traincheck.records import RunCounters, SidecarProgress

PROGRESS_PRINT_EVERY_S = 3.0
"""While the live check finishes after the job, how often the launcher says how far."""


class WaitInterrupted(Exception):
    """Ctrl-C while the launcher waited for the sidecar after the job."""


class InterruptibleWait:
    """After the job, SIGINT no longer goes to it: the first Ctrl-C during the wait
    for the sidecar stops that wait (:class:`WaitInterrupted` is raised inside it);
    any other is ignored, so run.json and the summary are written and the job's
    exit code is returned."""

    def __init__(self) -> None:
        self._armed = False

    def handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self._armed:
            self._armed = False
            raise WaitInterrupted

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        self._armed = True
        try:
            yield
        finally:
            self._armed = False


@contextlib.contextmanager
def interrupt_stops_the_wait() -> Iterator[InterruptibleWait]:
    """SIGINT handled by an :class:`InterruptibleWait` for the rest of the run."""
    wait = InterruptibleWait()
    previous = signal.signal(signal.SIGINT, wait.handle)
    try:
        yield wait
    finally:
        signal.signal(signal.SIGINT, previous)


class ProgressPrinter:
    """At most one line every ``PROGRESS_PRINT_EVERY_S`` while the live check finishes:
    a long wait says what it waits for, a short one says nothing."""

    def __init__(self, notify: Callable[[str], None]) -> None:
        self._notify = notify
        self._last_print = time.monotonic()
        self._hinted = False
        self.last: SidecarProgress | None = None
        """The last progress heard (printed or not)."""

    def __call__(self, progress: SidecarProgress) -> None:
        self.last = progress
        now = time.monotonic()
        if now - self._last_print < PROGRESS_PRINT_EVERY_S:
            return
        self._last_print = now
        hint = "" if self._hinted else " (Ctrl-C leaves it to traincheck-check)"
        self._hinted = True
        self._notify(
            f"finishing the live check: {progress.events_checked:,} of "
            f"{progress.events_received:,} events{hint}"
        )


def collect_summary(
    sidecar: SidecarProcess,
    stall_s: float,
    wait: InterruptibleWait,
    notify: Callable[[str], None],
) -> tuple[RunCounters | None, str]:
    """Drain the sidecar: its summary, or None and why there is none (said to the
    user through ``notify``: how far its live check is, while it finishes)."""
    code = sidecar.exit_code()
    if code is not None:
        return None, f"exited unexpectedly ({describe_exit(code)})"
    printer = ProgressPrinter(notify)
    try:
        with wait.armed():
            summary = sidecar.drain(stall_s, printer)
    except WaitInterrupted:
        sidecar.kill()
        return None, "was stopped by Ctrl-C while " + waiting_for(printer.last)
    if summary is not None:
        return summary, ""
    code = sidecar.exit_code()
    if code is not None:
        return None, f"exited unexpectedly ({describe_exit(code)})"
    sidecar.kill()
    if printer.last is None:
        return None, f"sent no summary within {stall_s:g} s and was stopped"
    return None, (
        f"made no progress for {stall_s:g} s while {waiting_for(printer.last)} and was stopped"
    )


def waiting_for(progress: SidecarProgress | None) -> str:
    """What the sidecar was doing when the launcher stopped waiting for it."""
    if progress is None:
        return "draining"
    if progress.events_checked >= progress.events_received:
        return f"writing the live verdict (all {progress.events_received} events checked)"
    return (
        f"finishing the live check ({progress.events_checked} of "
        f"{progress.events_received} events checked)"
    )
