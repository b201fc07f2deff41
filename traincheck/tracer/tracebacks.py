"""Tracebacks as the job would print them untraced: without TrainCheck's frames.

An exception that crosses a traced call carries the frames of the tracer's
wrappers: a user's ``forward`` that raises, or the ``KeyboardInterrupt`` that a
Ctrl-C or ``traincheck-run --on-violation stop`` delivers while a hook happens to
run. The job's traceback would then show files of ours between the user's and
torch's, and differ from the untraced run's. The tracer installs an excepthook
that drops those frames (from the exception and from the ones chained to it) and
hands the rest to the hook that was there before, the user's if they set one, so
what the job prints is what it prints untraced. Nothing else changes: the
exception, its type and its message are the job's own, and a hook the job installs
later replaces ours.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable

_PACKAGE_DIR = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_CHAINED = 32
"""Chained exceptions (``__cause__`` / ``__context__``) cleaned at most."""

ExceptHook = Callable[[type[BaseException], BaseException, types.TracebackType | None], object]


def _is_ours(filename: str) -> bool:
    try:
        path = os.path.realpath(filename)
    except (OSError, ValueError):
        return False
    return path.startswith(_PACKAGE_DIR + os.sep)


def without_our_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` with every frame of a TrainCheck module left out (the others in order)."""
    kept: list[types.TracebackType] = []
    while tb is not None:
        if not _is_ours(tb.tb_frame.f_code.co_filename):
            kept.append(tb)
        tb = tb.tb_next
    rebuilt: types.TracebackType | None = None
    for entry in reversed(kept):
        rebuilt = types.TracebackType(rebuilt, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return rebuilt


def _clean(exc: BaseException) -> None:
    """Drop our frames from ``exc`` and the exceptions chained to it."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending and len(seen) < MAX_CHAINED:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = without_our_frames(current.__traceback__)
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]


def install_excepthook() -> None:
    """Put the cleaning hook in front of the current ``sys.excepthook`` (once)."""
    previous: ExceptHook = sys.excepthook
    if getattr(previous, "_traincheck_cleans_tracebacks", False):
        return

    def excepthook(
        exc_type: type[BaseException], exc: BaseException, tb: types.TracebackType | None
    ) -> None:
        try:
            _clean(exc)
            tb = exc.__traceback__
        except Exception:
            pass  # never worse than the traceback the job had
        previous(exc_type, exc, tb)

    excepthook._traincheck_cleans_tracebacks = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook
