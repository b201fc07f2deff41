"""Errors the user can act on, kept apart from internal bugs.

A :class:`UserError` is printed as one line on stderr and the command exits with
code 2; anything else is a bug in TrainCheck and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user gave us: a path, a file, an option."""


class NotATraceError(UserError):
    """A directory that holds no TrainCheck trace."""


class InvariantsFileError(UserError):
    """An invariants file that cannot be read or does not follow the format."""
