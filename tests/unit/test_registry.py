"""The per-user run registry: private files, typed parsing, stale entries ignored."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import psutil

from traincheck.cli.jobs import find_jobs, select_job
from traincheck.run_registry import MAX_ENTRY_BYTES, RunRegistration, read_entries


def _registration(directory: Path, pid: int, run_id: str = "run-1") -> RunRegistration:
    return RunRegistration(
        run_id=run_id,
        pid=pid,
        rank=0,
        world_size=1,
        endpoint="ipc:///nowhere/events.sock",
        trace_dir=None,
        directory=directory,
    )


def test_entries_are_private_and_removed(tmp_path: Path) -> None:
    directory = tmp_path / "registry"
    registration = _registration(directory, os.getpid())
    registration.register(steps=3)
    assert registration.path is not None
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(registration.path.stat().st_mode) == 0o600
    registration.refresh(steps=7, backlog_batches=2)
    ((_, entry),), warnings = read_entries(directory)
    assert warnings == [] and (entry.pid, entry.steps, entry.backlog_batches) == (os.getpid(), 7, 2)
    registration.unregister()
    assert read_entries(directory) == ([], [])


def test_this_process_is_a_live_job_and_found_by_pid_and_run_id(tmp_path: Path) -> None:
    registration = _registration(tmp_path, os.getpid())
    registration.register()
    jobs, _ = find_jobs(tmp_path)
    assert [job.run_id for job in jobs] == ["run-1"]
    assert select_job(str(os.getpid()), jobs) is jobs[0]
    assert select_job("run-1", jobs) is jobs[0]
    assert not jobs[0].attached


def test_stale_entries_are_ignored_and_pruned(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    _registration(tmp_path, int(dead.stdout)).register()
    assert list(tmp_path.glob("*.json"))
    assert find_jobs(tmp_path)[0] == []
    assert list(tmp_path.glob("*.json")) == []


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def test_an_entry_left_by_a_process_that_exec_d_is_stale(tmp_path: Path) -> None:
    """A script that re-runs itself under torchrun (``os.execv``) keeps its pid but not
    its command line: its old entry is not a live job (the agent is not traced)."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import os, sys; os.execv(sys.executable, "
         "[sys.executable, '-c', 'import time; time.sleep(30)'])"],
    )  # fmt: skip
    try:
        registration = _registration(tmp_path, child.pid)
        registration.register()  # as the tracer of the first program image would
        entry_path = registration.path
        ((_, entry),), _ = read_entries(tmp_path)
        stale = msgspec.structs.replace(entry, cmdline=[sys.executable, "-c", "before exec"])
        entry_path.write_bytes(msgspec.json.encode(stale))
        # Wait for the exec to be visible. While it happens, /proc/<pid>/cmdline can
        # be empty or unreadable for a moment: that is "not yet", not a failure.
        deadline = time.monotonic() + 30
        while _cmdline(child.pid)[-1:] != ["import time; time.sleep(30)"]:
            assert time.monotonic() < deadline, "the child never exec'd"
            time.sleep(0.02)
        assert find_jobs(tmp_path)[0] == []
    finally:
        child.kill()
        child.wait()


def test_an_entry_of_an_unchanged_process_is_live(tmp_path: Path) -> None:
    _registration(tmp_path, os.getpid()).register()
    ((_, entry),), _ = read_entries(tmp_path)
    assert entry.cmdline == sys.orig_argv
    assert len(find_jobs(tmp_path)[0]) == 1


def test_hostile_entries_are_skipped_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "huge.json").write_bytes(b" " * (MAX_ENTRY_BYTES + 1))
    (tmp_path / "code.json").write_text('{"__reduce__": "os.system"}')
    (tmp_path / "link.json").symlink_to("/etc/passwd")
    entries, warnings = read_entries(tmp_path)
    assert entries == [] and len(warnings) == 3


def test_unwritable_registry_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    registration = _registration(blocker / "registry", os.getpid())
    registration.register()  # cannot create a directory under a file: said once, not raised
    assert registration.path is None
