"""The per-user run registry: how ``traincheck-attach`` and ``traincheck-ps`` find jobs.

Every traced process that starts publishing writes one small JSON entry,
``${XDG_RUNTIME_DIR or TMPDIR}/traincheck-<uid>/registry/<run_id>-<pid>.json``,
refreshes it about once a second from the publisher's timer thread (steps so
far, batches held for an absent sidecar) and removes it at exit. A process that
was killed leaves its entry behind; readers check liveness (``psutil``) and
ignore or prune stale entries.

Privacy: the directories are ``0700`` and must belong to us (never a link), the
entries are ``0600``; a reader skips any entry that is not a plain file of ours.
Entries are parsed as typed JSON (msgspec), never evaluated.

Writing runs inside the training process, so it fails open: an error is said
once on stderr and the job carries on untraced by the registry.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from traincheck.errors import UnsafePathError
from traincheck.private_files import ensure_private_dir, per_user_dir, write_private_file

REGISTRY_FORMAT = "traincheck-registry"
REGISTRY_VERSION = 1
MAX_ENTRY_BYTES = 64 * 1024
"""Entries are a few hundred bytes; anything much larger is not ours."""

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class RegistryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One traced process, as ``traincheck-ps`` lists it."""

    format: str = REGISTRY_FORMAT
    format_version: int = REGISTRY_VERSION
    run_id: str
    pid: int
    rank: int
    world_size: int
    endpoint: str
    trace_dir: str | None
    argv: list[str]
    started_wall_s: float
    updated_wall_s: float
    steps: int = 0
    backlog_batches: int = 0
    cmdline: list[str] = msgspec.field(default_factory=list)
    """The interpreter's whole command line (``sys.orig_argv``). A process that
    ``exec``s (a script that re-runs itself under torchrun) keeps its pid but not
    its command line: readers compare the two to tell the entry is stale."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(RegistryEntry)


def user_base_dir() -> Path:
    """``traincheck-<uid>`` under XDG_RUNTIME_DIR (or the temp dir): the per-user
    directory that holds run directories and the registry."""
    return per_user_dir(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())


def registry_dir() -> Path:
    return user_base_dir() / "registry"


class RunRegistration:
    """This process's registry entry: ``register`` / ``refresh`` / ``unregister``."""

    def __init__(
        self,
        *,
        run_id: str,
        pid: int,
        rank: int,
        world_size: int,
        endpoint: str,
        trace_dir: str | None,
        directory: Path | None = None,
    ) -> None:
        self.run_id = run_id
        self.pid = pid
        self.rank = rank
        self.world_size = world_size
        self.endpoint = endpoint
        self.trace_dir = trace_dir
        self.directory = directory
        self.path: Path | None = None
        self._started_wall_s = time.time()
        self._failed = False

    def register(self, steps: int = 0) -> None:
        """Write the entry (best effort, never raises)."""
        if self.path is not None or self._failed:
            return
        try:
            directory = self.directory or registry_dir()
            if self.directory is None:
                ensure_private_dir(directory.parent)
            ensure_private_dir(directory)
            name = _UNSAFE_NAME.sub("_", f"{self.run_id}-{self.pid}") + ".json"
            self.path = directory / name
            self._write(steps, 0)
        except (OSError, ValueError, UnsafePathError) as exc:
            self._fail(exc)

    def refresh(self, steps: int, backlog_batches: int) -> None:
        if self.path is None or self._failed:
            return
        try:
            self._write(steps, backlog_batches)
        except (OSError, ValueError) as exc:
            self._fail(exc)

    def unregister(self) -> None:
        path, self.path = self.path, None
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()

    def _write(self, steps: int, backlog_batches: int) -> None:
        assert self.path is not None
        entry = RegistryEntry(
            run_id=self.run_id,
            pid=self.pid,
            rank=self.rank,
            world_size=self.world_size,
            endpoint=self.endpoint,
            trace_dir=self.trace_dir,
            argv=list(getattr(sys, "argv", None) or []),
            cmdline=list(getattr(sys, "orig_argv", None) or []),
            started_wall_s=self._started_wall_s,
            updated_wall_s=time.time(),
            steps=steps,
            backlog_batches=backlog_batches,
        )
        write_private_file(self.path, _encoder.encode(entry))

    def _fail(self, exc: BaseException) -> None:
        self._failed = True
        self.path = None
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.write(
                f"traincheck: run registry unavailable ({exc}); attach will not find this process\n"
            )


def read_entry(path: Path) -> RegistryEntry:
    """One entry, checked: a plain file of ours, small, valid typed JSON.

    Raises ``ValueError`` with the reason for anything else."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path.name}: not a plain file")
    if info.st_uid != os.getuid():
        raise ValueError(f"{path.name}: owned by another user")
    if info.st_size > MAX_ENTRY_BYTES:
        raise ValueError(f"{path.name}: {info.st_size} bytes, larger than {MAX_ENTRY_BYTES}")
    try:
        entry = _decoder.decode(path.read_bytes())
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name}: not a registry entry ({exc})") from None
    if entry.format != REGISTRY_FORMAT or entry.format_version != REGISTRY_VERSION:
        raise ValueError(f"{path.name}: unsupported format {entry.format} v{entry.format_version}")
    return entry


def read_entries(
    directory: Path | None = None,
) -> tuple[list[tuple[Path, RegistryEntry]], list[str]]:
    """Every readable entry (with its path) and a warning per unreadable one."""
    directory = directory or registry_dir()
    entries: list[tuple[Path, RegistryEntry]] = []
    warnings: list[str] = []
    try:
        paths = sorted(directory.glob("*.json"))
    except OSError as exc:
        return [], [f"cannot list {directory}: {exc}"]
    for path in paths:
        try:
            entries.append((path, read_entry(path)))
        except FileNotFoundError:
            continue  # removed by its process while we listed
        except (OSError, ValueError) as exc:
            warnings.append(str(exc))
    return entries, warnings
