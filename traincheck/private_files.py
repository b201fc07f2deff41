"""Owner-only files and directories: how every process creates what it keeps private.

Three primitives, used by the launcher (run directory), the tracer (run registry,
exit counters), the sidecar (trace files, markers) and the offline tools:

* :func:`ensure_private_dir`: a directory that is ours, mode 0700, never a link;
* :func:`write_private_file`: a file replaced atomically (temporary file + rename),
  mode 0600, so a reader never sees half a record and no other user reads it;
* :func:`read_capped`: a whole file, refusing one larger than a bound, so a file
  we did not write cannot make us read gigabytes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from traincheck.errors import UnsafePathError

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def per_user_dir(base: str | os.PathLike[str]) -> Path:
    """``traincheck-<uid>`` under ``base`` (a runtime or temp directory): the private
    directory that holds a user's run directories and run registry."""
    return Path(base) / f"traincheck-{os.getuid()}"


class FileTooLargeError(ValueError):
    """A file larger than its reader's bound (see :func:`read_capped`)."""


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` mode 0700, or accept an existing one only if it is a plain
    directory of ours (tightening its mode to 0700); raise :class:`UnsafePathError`
    for a link, a non-directory or another user's directory.

    Missing parents are created as ``mkdir -p`` does, with the default mode: only
    ``path`` itself is made private (the callers' parents are a runtime or temp
    directory, or a private directory they ensured first). The checks are made on
    an open descriptor (``O_NOFOLLOW``), so the directory cannot be swapped for a
    link between the check and the ``chmod``.
    """
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE)
    except FileExistsError:
        pass
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=PRIVATE_DIR_MODE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePathError(f"refusing to use {path}: not a plain directory") from None
        raise
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid():
            raise UnsafePathError(f"refusing to use {path}: owned by another user")
        if stat.S_IMODE(info.st_mode) != PRIVATE_DIR_MODE:
            os.fchmod(fd, PRIVATE_DIR_MODE)
    finally:
        os.close(fd)


def write_private_file(path: Path, data: bytes, *, tmp: Path | None = None) -> None:
    """Replace ``path`` with ``data`` atomically, mode 0600 (raises ``OSError``).

    ``tmp`` (default ``.<name>.tmp`` beside it) is opened without following links
    and removed again if the write fails."""
    tmp = tmp if tmp is not None else path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), PRIVATE_FILE_MODE)  # an older tmp kept its mode
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_capped(path: Path, max_bytes: int) -> bytes:
    """The whole file; :class:`FileTooLargeError` past ``max_bytes`` (``OSError`` as
    ``open`` raises it)."""
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLargeError(f"{path.name} is larger than {max_bytes} bytes")
    return data
