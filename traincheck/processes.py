"""Whether a process of this machine is still alive, without psutil (the sidecar's
drain and ``traincheck-check --follow`` ask it in their loops)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs, ours or another user's (signal 0 checks, sends nothing).

    A zombie has ended: whoever should reap it (a launcher that died, an init that
    does not reap) may never do so, and waiting for it would never end."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[:1]
    except OSError:
        return False  # no /proc (not Linux): trust signal 0
    return state == [b"Z"]
