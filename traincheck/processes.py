"""Whether a process of this machine is still alive, without psutil (the sidecar's
drain and ``traincheck-check --follow`` ask it in their loops)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists, ours or another user's (signal 0 checks, sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
