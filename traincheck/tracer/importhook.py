"""Run a callback right after a module finishes importing, without importing it.

The bootstrap must not import torch itself: the user's script may set
environment variables (``CUDA_VISIBLE_DEVICES``, thread counts, allocator
settings) before its own ``import torch``. A finder at the front of
``sys.meta_path`` lets the normal machinery find the module, then wraps that
one loader's ``exec_module`` so the callback runs once the module body has
executed. The finder removes itself after the first successful import.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import types
from collections.abc import Callable, Sequence

Callback = Callable[[types.ModuleType], None]


class PostImportFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder that calls ``callback(module)`` after ``name`` is imported."""

    def __init__(self, name: str, callback: Callback) -> None:
        self.name = name
        self.callback = callback
        self._searching = threading.local()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name or getattr(self._searching, "active", False):
            return None
        self._searching.active = True
        try:
            spec = _find_with_others(self, fullname, path, target)
        finally:
            self._searching.active = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        _wrap_exec_module(spec.loader, self)
        return spec

    def imported(self, module: types.ModuleType) -> None:
        """Called by the wrapped loader: retire the finder, then run the callback."""
        remove(self)
        self.callback(module)


def when_imported(name: str, callback: Callback) -> PostImportFinder | None:
    """Call ``callback(module)`` after ``name`` is imported (now, if it already is).

    Returns the installed finder (None when the callback ran immediately).
    """
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return None
    finder = PostImportFinder(name, callback)
    sys.meta_path.insert(0, finder)
    return finder


def remove(finder: PostImportFinder) -> None:
    """Take the finder out of ``sys.meta_path`` (no error if it is gone)."""
    try:
        sys.meta_path.remove(finder)
    except ValueError:
        pass


def _find_with_others(
    finder: PostImportFinder,
    fullname: str,
    path: Sequence[str] | None,
    target: types.ModuleType | None,
) -> importlib.machinery.ModuleSpec | None:
    for other in list(sys.meta_path):
        if other is finder:
            continue
        find_spec = getattr(other, "find_spec", None)
        if find_spec is None:
            continue
        spec: importlib.machinery.ModuleSpec | None = find_spec(fullname, path, target)
        if spec is not None:
            return spec
    return None


def _wrap_exec_module(loader: importlib.abc.Loader, finder: PostImportFinder) -> None:
    """Shadow ``exec_module`` on this loader instance only, and only once."""
    original = loader.exec_module

    def exec_module(module: types.ModuleType) -> None:
        try:
            original(module)
        finally:
            # Restore the loader before anything else can observe it.
            try:
                del loader.exec_module
            except AttributeError:
                pass
        finder.imported(module)

    loader.exec_module = exec_module  # type: ignore[method-assign]
