"""Which processes the tracer arms in, and disarming DataLoader workers at entry.

The bootstrap runs in every Python process that inherits ``PYTHONPATH``, but
only training processes should send events:

- the torchrun / ``torch.distributed.run`` agent is skipped (its ranks, which
  have ``RANK`` set, inherit ``PYTHONPATH`` and are traced);
- inductor compile workers are skipped;
- multiprocessing children started by ``spawn``/``forkserver`` (and their
  helper processes) are armed *gated*: they send nothing until they call a
  traced training API, because at start-up a DataLoader worker cannot be told
  apart from, say, a rank started by ``torch.multiprocessing.spawn``;
- so is every process that is not the launcher's direct child
  (``TRAINCHECK_LAUNCHER_PID``): helpers the job starts (``torch.compile`` runs a
  dozen ``python -c`` probes, which each paid a socket, a registry entry and a
  linger at exit: 8 s -> 24 s for a small compiled script) stay silent, while
  torchrun's ranks or a ``python`` under a shell script open at their first call;
- DataLoader workers disarm at the entry of the worker loop, whichever start
  method created them (see :func:`worker_loop`).

The decision reads the environment only through
:class:`~traincheck.tracer.config.TracerConfig`; the worker entry reaches the
process's tracer through :mod:`~traincheck.tracer.state`, so this module sits
below both the tracer and the hooks that install :func:`worker_loop`.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from typing import Any

from traincheck.tracer import state
from traincheck.tracer.config import TracerConfig


class Activation(enum.Enum):
    """What the bootstrap does in a process."""

    SKIP = "skip"
    ARM = "arm"
    ARM_GATED = "arm-gated"


def decide(
    orig_argv: Sequence[str], config: TracerConfig, parent_pid: int | None = None
) -> tuple[Activation, str]:
    """Decide from the full command line (``sys.orig_argv``) and the configuration.

    Returns the decision and a short reason, for debugging output.
    """
    command = " ".join(orig_argv[1:])
    if "_inductor" in command and "compile_worker" in command:
        return Activation.SKIP, "inductor compile worker"
    if _is_torchrun_agent(orig_argv) and not config.rank_assigned:
        return Activation.SKIP, "torchrun agent"
    if "--multiprocessing-fork" in orig_argv or "from multiprocessing." in command:
        return Activation.ARM_GATED, "multiprocessing child"
    launcher = config.launcher_pid
    parent = os.getppid() if parent_pid is None else parent_pid
    if launcher and launcher != str(parent):
        return Activation.ARM_GATED, "not the launcher's child: armed at its first traced call"
    return Activation.ARM, "training process"


def _is_torchrun_agent(orig_argv: Sequence[str]) -> bool:
    args = list(orig_argv[1:])
    if args and os.path.basename(args[0]) in ("torchrun", "torchrun.py"):
        return True
    for i, arg in enumerate(args[:-1]):
        if arg == "-m" and args[i + 1] in ("torch.distributed.run", "torch.distributed.launch"):
            return True
    # Console scripts run as `python /path/bin/torchrun ...`, or directly as the
    # interpreter with argv[0] == the script.
    return bool(orig_argv) and os.path.basename(orig_argv[0]) == "torchrun"


def worker_loop(*args: Any, **kwargs: Any) -> Any:
    """Replacement for ``torch.utils.data._utils.worker._worker_loop``.

    Disarms the tracer (dropping anything queued, uninstalling the torch hooks)
    before any dataset code runs, then runs torch's worker loop. It is a
    module-level function so that the ``spawn`` start method can pickle the
    DataLoader's process target by reference; in a spawned child it resolves
    torch's original loop itself.
    """
    state.disarm_current("DataLoader worker")
    from torch.utils.data._utils import worker

    original = getattr(worker, ORIGINAL_ATTR, None) or worker._worker_loop
    if original is worker_loop:
        raise RuntimeError("traincheck: torch's DataLoader worker loop was lost")
    return original(*args, **kwargs)


ORIGINAL_ATTR = "_traincheck_original_worker_loop"
"""Attribute of torch's worker module that keeps its own loop while ours is installed."""
