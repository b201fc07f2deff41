"""Traced jobs of this user, found through the run registry and checked with psutil.

A registry entry is one traced process (``traincheck/tracer/registry.py``); a job
is every live entry sharing a run id -- all ranks of a torchrun job, for
instance. An entry is live when its pid runs and that process started before the
entry was written (so a recycled pid is never mistaken for the job). Stale
entries, left by killed processes, are removed as they are found.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from traincheck.errors import UserError
from traincheck.run_registry import RegistryEntry, read_entries
from traincheck.sidecar.receiver import read_marker_pid

PID_START_SLACK_S = 2.0
"""Clock slack when comparing a process's start time with its entry's."""


@dataclass(frozen=True)
class TracedJob:
    """One run: its live processes (one per rank) and whether a sidecar serves it."""

    run_id: str
    entries: tuple[RegistryEntry, ...]
    sidecar_pid: int | None

    @property
    def endpoint(self) -> str:
        return self.entries[0].endpoint

    @property
    def attached(self) -> bool:
        return self.sidecar_pid is not None

    @property
    def pids(self) -> list[int]:
        return [e.pid for e in self.entries]

    @property
    def steps(self) -> int:
        return max(e.steps for e in self.entries)

    @property
    def trace_dir(self) -> str | None:
        return self.entries[0].trace_dir


def is_live(entry: RegistryEntry) -> bool:
    """The entry's process still runs and is the one that wrote it."""
    try:
        process = psutil.Process(entry.pid)
        started = process.create_time()
        zombie = process.status() == psutil.STATUS_ZOMBIE
        cmdline = process.cmdline() if entry.cmdline and not zombie else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    if cmdline is not None and cmdline[1:] != entry.cmdline[1:]:
        return False  # same pid, another program: the process exec'd (e.g. into torchrun)
    return not zombie and started <= entry.started_wall_s + PID_START_SLACK_S


def find_jobs(
    directory: Path | None = None, *, prune: bool = True
) -> tuple[list[TracedJob], list[str]]:
    """Every live traced job of this user, oldest first, and registry warnings."""
    found, warnings = read_entries(directory)
    by_run: dict[str, list[RegistryEntry]] = {}
    for path, entry in found:
        if is_live(entry):
            by_run.setdefault(entry.run_id, []).append(entry)
        elif prune:
            with contextlib.suppress(OSError):
                path.unlink()
    jobs = []
    for run_id, entries in by_run.items():
        entries.sort(key=lambda e: (e.rank, e.pid))
        jobs.append(TracedJob(run_id, tuple(entries), _live_sidecar(entries[0].endpoint)))
    jobs.sort(key=lambda job: min(e.started_wall_s for e in job.entries))
    return jobs, warnings


def _live_sidecar(endpoint: str) -> int | None:
    pid = read_marker_pid(endpoint)
    if pid is None:
        return None
    try:
        alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return pid if alive else None


def select_job(target: str, jobs: list[TracedJob]) -> TracedJob:
    """The job named by ``target``: a run id, the pid of one of its processes, or the
    pid of an ancestor (``traincheck-run``, the torchrun agent). Raises UserError."""
    for job in jobs:
        if job.run_id == target:
            return job
    if not target.isdigit():
        raise UserError(f"no traced job with run id {target!r} (see traincheck-ps)")
    pid = int(target)
    for job in jobs:
        if pid in job.pids:
            return job
    refuse_foreign_process(pid)
    descendants = _descendants(pid)
    matches = [job for job in jobs if descendants.intersection(job.pids)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(job.run_id for job in matches)
        raise UserError(f"process {pid} runs several traced jobs ({names}); name one by run id")
    raise UserError(f"process {pid} is not a traced job of yours (see traincheck-ps)")


def refuse_foreign_process(pid: int) -> None:
    """Refuse, in one line, a pid that belongs to another user."""
    try:
        owner = psutil.Process(pid).uids().real
    except psutil.NoSuchProcess:
        raise UserError(f"no process with pid {pid}") from None
    except psutil.AccessDenied:
        raise UserError(f"process {pid} belongs to another user; refusing to attach") from None
    if owner != os.getuid():
        raise UserError(f"process {pid} belongs to another user (uid {owner}); refusing to attach")


def _descendants(pid: int) -> set[int]:
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return set()


def describe_age(started_wall_s: float) -> str:
    """``HH:MM:SS`` today, else the date too."""
    started = time.localtime(started_wall_s)
    if time.strftime("%Y%m%d", started) == time.strftime("%Y%m%d"):
        return time.strftime("%H:%M:%S", started)
    return time.strftime("%Y-%m-%d %H:%M", started)
