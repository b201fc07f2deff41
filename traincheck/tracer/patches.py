"""``Patches``: the attributes the tracer replaced on torch (and chosen modules), undoable.

Every hook module that wraps a function (:mod:`~traincheck.tracer.hooks`,
:mod:`~traincheck.tracer.apis`, :mod:`~traincheck.tracer.extra_modules`) records
its replacement here, in one list shared through the installer, so uninstalling
restores every original in reverse order without any hook module knowing the
others. Patching happens at install time only: nothing here is on the per-call path.
"""

from __future__ import annotations

import functools


class Patches:
    """Replacements made so far, in order, with the originals they hide."""

    def __init__(self) -> None:
        self._replaced: list[tuple[object, str, object]] = []

    def patch(self, owner: object, name: str, replacement: object) -> None:
        """Replace ``owner.name`` until :meth:`restore_all`; the replacement takes the
        original's name, docstring and ``__wrapped__`` (``functools.update_wrapper``)."""
        original = getattr(owner, name)
        functools.update_wrapper(replacement, original)  # type: ignore[arg-type]
        self._replaced.append((owner, name, original))
        setattr(owner, name, replacement)

    def restore_all(self) -> None:
        """Put every original back, the latest replacement first."""
        for owner, name, original in reversed(self._replaced):
            setattr(owner, name, original)
        self._replaced.clear()
