"""Environment variables through which the launcher configures the tracer.

Settings flow one way: CLI flags -> settings object in the launcher -> these
variables in the training process's environment -> the tracer. Each name is
defined once here; nothing else spells them.
"""

from __future__ import annotations

TRAINCHECK_ENDPOINT = "TRAINCHECK_ENDPOINT"
"""ZeroMQ endpoint the tracer PUSHes batches to (``ipc://...`` or ``tcp://...``).
Its presence is what arms the tracer: without it the bootstrap does nothing."""

TRAINCHECK_RUN_ID = "TRAINCHECK_RUN_ID"
"""Identifier of the traced run; the sidecar rejects batches carrying another."""

TRAINCHECK_TRACE_DIR = "TRAINCHECK_TRACE_DIR"
"""The run's trace directory; the tracer writes its exit counters file there."""

TRAINCHECK_BOOTSTRAP_DIR = "TRAINCHECK_BOOTSTRAP_DIR"
"""Directory holding our ``sitecustomize.py``; removed from ``sys.path`` while
the user's own ``sitecustomize`` is chained, then restored for child processes."""

TRAINCHECK_PLAN = "TRAINCHECK_PLAN"
"""Optional path to an instrumentation plan (JSON) for selective tracing."""

TRAINCHECK_DISABLE = "TRAINCHECK_DISABLE"
"""Set to ``1`` to keep the tracer off in a process that would otherwise arm it."""

TRAINCHECK_DEBUG = "TRAINCHECK_DEBUG"
"""Set to ``1`` to let tracer start-up errors propagate instead of being logged."""

TRAINCHECK_BACKLOG_BYTES = "TRAINCHECK_BACKLOG_BYTES"
"""Optional bound, in bytes, on the encoded batches a tracer holds while no sidecar
takes them (detached runs, a dead or stalled sidecar); default 16 MiB."""

TRAINCHECK_LAUNCHER_PID = "TRAINCHECK_LAUNCHER_PID"
"""The pid of the ``traincheck-run`` that started the job. Its direct child is armed
at once; any other process that inherits the environment (helpers started by the
job, such as the ``python -c`` probes ``torch.compile`` runs; torchrun's ranks; a
``python`` under a shell script) is armed *gated*: silent, with no socket, until
it calls a traced API. Absent: every process is armed (tests, hand-built envs)."""

ALL = (
    TRAINCHECK_ENDPOINT,
    TRAINCHECK_RUN_ID,
    TRAINCHECK_TRACE_DIR,
    TRAINCHECK_BOOTSTRAP_DIR,
    TRAINCHECK_PLAN,
    TRAINCHECK_DISABLE,
    TRAINCHECK_DEBUG,
    TRAINCHECK_BACKLOG_BYTES,
    TRAINCHECK_LAUNCHER_PID,
)
