"""``TracerConfig``: every environment variable the training-process side reads.

The launcher configures the tracer only through the environment
(:mod:`traincheck.environment` names each variable once). Reading all of them
here, into one frozen value, means no other tracer module consults
``os.environ``: each setting has one parse, one default and one place to look
when a process behaves unexpectedly.

Importing this module is cheap (no torch, no ZeroMQ): the bootstrap reads the
configuration in every Python process that inherits our ``PYTHONPATH``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from traincheck import environment as env

BACKLOG_MAX_BYTES = 16 * 1024 * 1024
"""Encoded batches kept for a sidecar that is absent or stalled; older ones are
dropped (and counted) past this. A few thousand steps of a small model."""


@dataclasses.dataclass(frozen=True)
class TracerConfig:
    """The tracer's settings, read once from the environment the launcher built."""

    endpoint: str
    """ZeroMQ endpoint batches go to; empty: this process is not traced."""
    run_id: str
    trace_dir: str | None
    """Where the exit counters file goes (None: nowhere)."""
    rank: int
    local_rank: int
    world_size: int
    debug: bool
    """Let tracer failures propagate instead of being counted and logged once."""
    plan_path: str | None = None
    """Instrumentation plan for selective tracing (None: trace everything)."""
    backlog_max_bytes: int = BACKLOG_MAX_BYTES
    """Bound on the batches held while no sidecar takes them (see the publisher)."""
    disabled: bool = False
    """``TRAINCHECK_DISABLE=1``: stay off even with an endpoint."""
    launcher_pid: str | None = None
    """Pid of the ``traincheck-run`` whose direct child is armed at once (None: any)."""
    rank_assigned: bool = False
    """``RANK`` is set: a torchrun rank, as opposed to the torchrun agent itself."""
    bootstrap_dir: str | None = None
    """Directory of our ``sitecustomize.py``, when the launcher moved it elsewhere."""

    @property
    def wants_tracing(self) -> bool:
        """An endpoint is set and tracing is not switched off."""
        return bool(self.endpoint) and not self.disabled

    @classmethod
    def read(cls) -> TracerConfig:
        """This process's configuration, as its environment says now."""
        return cls.from_environ(os.environ)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TracerConfig:
        """Parse the environment; never raises (a malformed number takes its default)."""
        return cls(
            endpoint=environ.get(env.TRAINCHECK_ENDPOINT, ""),
            run_id=environ.get(env.TRAINCHECK_RUN_ID, ""),
            trace_dir=environ.get(env.TRAINCHECK_TRACE_DIR) or None,
            rank=_int_env(environ, "RANK", 0),
            local_rank=_int_env(environ, "LOCAL_RANK", 0),
            world_size=_int_env(environ, "WORLD_SIZE", 1),
            debug=environ.get(env.TRAINCHECK_DEBUG) == "1",
            plan_path=environ.get(env.TRAINCHECK_PLAN) or None,
            backlog_max_bytes=_backlog_bound(environ),
            disabled=environ.get(env.TRAINCHECK_DISABLE) == "1",
            launcher_pid=environ.get(env.TRAINCHECK_LAUNCHER_PID) or None,
            rank_assigned="RANK" in environ,
            bootstrap_dir=environ.get(env.TRAINCHECK_BOOTSTRAP_DIR) or None,
        )


def _backlog_bound(environ: Mapping[str, str]) -> int:
    """``TRAINCHECK_BACKLOG_BYTES`` if set to a non-negative integer, else the default."""
    value = _int_env(environ, env.TRAINCHECK_BACKLOG_BYTES, BACKLOG_MAX_BYTES)
    return value if value >= 0 else BACKLOG_MAX_BYTES


def _int_env(environ: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(environ.get(name, default))
    except ValueError:
        return default
