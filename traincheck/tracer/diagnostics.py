"""The tracer's own messages to the user: one prefixed line on stderr, never an exception.

The tracer runs inside someone else's program, so what it says must be told
apart from that program's output (the ``traincheck:`` prefix), and saying it
must never fail the program, even with stderr closed or replaced.
"""

from __future__ import annotations

import sys


def log(message: str) -> None:
    """One line on stderr, prefixed so users know it is not their program talking."""
    try:
        sys.stderr.write(f"traincheck: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
