"""The tracer's process-wide mutable state, in one place, and its reset in a forked child.

Everything the tracer keeps per process at module level lives here and nowhere
else: the process's current tracer, the torch hooks installed for it, the
DataLoader epoch counter, and the publishers a forked child inherited. Gathered
in one module, what ``fork`` copies into a child is visible at a glance, and one
handler (registered with ``os.register_at_fork`` when this module is first
imported) gives the child a clean start:

- the current tracer resets its per-process state (own pid, new gated
  publisher, new counters; the parent's publisher joins ``inherited_publishers``
  and is never used or closed);
- the epoch count starts over: the child's fresh meta-variables hold no epoch.

The installed hooks are kept: the patched torch functions were copied into the
child with the rest of its memory, and the child's tracer still uses them.
Thread-local call state of the hooks (the module-call depth, open optimizer
steps) is kept too: it mirrors the Python stack, which the child also inherits.
Caches that are pure functions of their keys (source lines, dtype names, module
argument summaries) stay beside their code: they are as valid in a child.

This module sits at the bottom of the tracer's layers: it imports no tracer
code at run time (only ``MetaState``, for type checking), and declares as small
Protocols what it needs of the objects it stores. So the DataLoader worker entry
and ``annotate`` reach the current tracer through it without importing the
tracer's own module, and the tracer registers itself here without a cycle.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from traincheck.tracer.meta import MetaState


class ProcessTracer(Protocol):
    """The current tracer, as the modules that reach it here see it."""

    armed: bool
    meta: MetaState
    """What ``annotate`` sets its values on."""

    def disarm(self, reason: str) -> None:
        """Stop tracing for good in this process."""
        ...

    def after_fork(self) -> None:
        """Start over as the tracer of a freshly forked child."""
        ...


class InstalledHooks(Protocol):
    """The torch hooks installed for a tracer (see :mod:`traincheck.tracer.installer`)."""

    @property
    def tracer(self) -> object:
        """The tracer they report to (compared by identity only)."""
        ...

    def uninstall(self) -> None: ...


@dataclasses.dataclass
class EpochCounter:
    """``epoch`` as counted by the DataLoader wrapper (see :mod:`traincheck.tracer.apis`)."""

    loader_id: int | None = None
    """``id`` of the first DataLoader iterated: only its passes count."""
    count: int = -1
    """Passes started so far, minus one (-1: none yet)."""


tracer: ProcessTracer | None = None
"""The process's tracer once armed; None in untraced and disarmed processes."""

hooks: InstalledHooks | None = None
"""The torch hooks of this process (one tracer per process)."""

epochs = EpochCounter()

inherited_publishers: list[object] = []
"""Publishers inherited across fork: kept referenced, never used or closed, in the child."""


def current() -> ProcessTracer | None:
    """The armed tracer of this process, if any."""
    return tracer


def set_current(new: ProcessTracer) -> None:
    """Make ``new`` the process's tracer (``Tracer.start``)."""
    global tracer
    tracer = new


def release(old: ProcessTracer) -> None:
    """Forget a disarmed tracer: remove its torch hooks, empty the slot if it is there."""
    global tracer
    if hooks is not None and hooks.tracer is old:
        hooks.uninstall()
    if tracer is old:
        tracer = None


def disarm_current(reason: str) -> None:
    """Disarm this process's tracer, if armed (DataLoader worker entry)."""
    armed = tracer
    if armed is not None:
        armed.disarm(reason)


def _reset_in_forked_child() -> None:
    global epochs
    epochs = EpochCounter()
    armed = tracer
    if armed is not None and armed.armed:
        armed.after_fork()


os.register_at_fork(after_in_child=_reset_in_forked_child)
