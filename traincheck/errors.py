"""Errors the user can act on, kept apart from internal bugs, and the exit codes.

A :class:`UserError` is printed as one line on stderr and the command exits with
:data:`EXIT_USER_ERROR`; anything else that escapes a command is a bug in
TrainCheck, printed as one line too (``TRAINCHECK_DEBUG=1`` adds the traceback)
and exits with :data:`EXIT_INTERNAL_ERROR`. :mod:`traincheck.cli_scaffold` applies
this to every command, so each exit code means one thing everywhere.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_VIOLATIONS = 1
"""``traincheck-check`` / ``traincheck-onlinecheck``: violations were found;
``traincheck-run --fail-on-violation``: the job succeeded but broke invariants."""

EXIT_USER_ERROR = 2
"""A usage mistake or a path/file the user gave that cannot be used, found before
any work started (argparse's own code for usage errors)."""

EXIT_INTERNAL_ERROR = 70
"""An internal error, i.e. a TrainCheck bug (``EX_SOFTWARE`` of sysexits.h): neither
1, which means "violations found", nor 2, which means the user can fix the input."""

EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT), as a shell reports it."""


def one_line(text: str) -> str:
    """``text`` with its lines joined: every message we print is one line."""
    return " ".join(text.split()) if "\n" in text else text


class UserError(Exception):
    """A mistake in what the user gave us: a path, a file, an option."""


class NotATraceError(UserError):
    """A directory that holds no TrainCheck trace."""


class InvariantsFileError(UserError):
    """An invariants file that cannot be read or does not follow the format."""


class UnsafePathError(UserError):
    """A directory we must keep private that is a link, not a directory, or not ours."""
