"""The private run directory that holds the run's ipc socket and the tracer's inputs.

``${XDG_RUNTIME_DIR or /tmp}/traincheck-<uid>/<run_id>/events.sock``, beside the
job's command (for the sidecar) and the tracing plan (for the tracer): both
directories are mode 0700 and must belong to us, so no other user can connect to
the socket, read it, or plant a symlink in its place. The run directory is
removed when the run ends; the per-user parent is kept for the next run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from traincheck.errors import UnsafePathError, UserError
from traincheck.private_files import ensure_private_dir, per_user_dir, write_private_file
from traincheck.records import encode_command
from traincheck.tracing_plan import TracingPlan, write_plan_file

SOCKET_NAME = "events.sock"
COMMAND_FILE = "command.json"
PLAN_FILE = "plan.json"
MAX_SOCKET_PATH = 100
"""Unix socket paths are limited to ~107 bytes (sun_path); stay well under."""


def new_run_id() -> str:
    """Time-sortable and unique enough for concurrent runs of one user."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class RunDirectory:
    """A created private run directory; ``remove`` is its pair."""

    path: Path
    run_id: str

    @property
    def endpoint(self) -> str:
        return f"ipc://{self.path / SOCKET_NAME}"

    def write_command(self, command: tuple[str, ...]) -> Path:
        """Hand the job's command to the sidecar in a private file, keeping it off the
        sidecar's own command line (where ``ps`` and process matchers would see it)."""
        path = self.path / COMMAND_FILE
        write_private_file(path, encode_command(list(command)))
        return path

    @property
    def plan_file(self) -> Path:
        """The tracer's plan (``TRAINCHECK_PLAN``): private, unlike the trace's record."""
        return self.path / PLAN_FILE

    def write_plan(self, plan: TracingPlan) -> Path:
        write_plan_file(self.plan_file, plan)
        return self.plan_file

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def create_run_directory(run_id: str) -> RunDirectory:
    """Create the run directory, preferring XDG_RUNTIME_DIR, falling back to the
    system temp dir when the socket path would be too long.

    The per-user directory has a predictable name: another user may have created
    it first (to deny us, or to lure us). We never use one that is not ours, and
    never refuse the user's job for it either: the run then gets a directory of
    its own from ``mkdtemp`` (private, unpredictable), the socket path permitting.
    """
    bases = [os.environ.get("XDG_RUNTIME_DIR") or "", tempfile.gettempdir(), "/tmp"]
    for base in dict.fromkeys(b for b in bases if b):
        path = per_user_dir(base) / run_id
        if len(str(path / SOCKET_NAME)) >= MAX_SOCKET_PATH:
            continue
        try:
            ensure_private_dir(path.parent)
        except UnsafePathError:
            continue  # planted by someone else: try the next base, then mkdtemp
        path.mkdir(mode=0o700)  # new: a run id is never reused
        ensure_private_dir(path)
        return RunDirectory(path=path, run_id=run_id)
    for base in dict.fromkeys(b for b in bases[1:] if b):
        path = Path(tempfile.mkdtemp(prefix=f"traincheck-{run_id}-", dir=base))
        if len(str(path / SOCKET_NAME)) < MAX_SOCKET_PATH:
            return RunDirectory(path=path, run_id=run_id)
        path.rmdir()
    raise UserError("no directory with a short enough path for the run's socket; set TMPDIR")
