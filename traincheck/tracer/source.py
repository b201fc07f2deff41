"""The user's source line of a traced call, cheaply ("train.py:42").

An alert that says *which line* called ``optimizer.step()`` saves the reader a
search. The line is the first frame, walking outwards from the hook, whose file
is not part of torch, TrainCheck, an installed package or the standard library.

Cost is kept to a frame walk with one dict lookup per frame: whether a code
object is "internal" is decided once per code object (keyed by identity), and the formatted
``file:line`` string is cached per (code object, line). Only outermost traced
calls carry a source (nested ones, e.g. ``autograd.backward`` inside
``Tensor.backward``, share their parent's line).
"""

from __future__ import annotations

import os
import sys
import sysconfig
import types

MAX_DEPTH = 64
"""Frames walked at most; deeper than this the call gets no source."""

_internal_code: dict[int, tuple[types.CodeType, bool]] = {}
"""id(code) -> (code, internal). Keyed by id because hashing a code object hashes its
bytecode and constants (slow); holding the code keeps its id from being reused."""

_formatted: dict[tuple[int, int], str] = {}
"""(id(code), line) -> "file:line" for user frames (their codes are held above)."""


def _internal_roots() -> tuple[str, ...]:
    """Folders whose files are never the user's: TrainCheck, installed packages, stdlib."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # traincheck/
    roots = {here + os.sep}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(os.path.abspath(path) + os.sep)
    return tuple(sorted(roots))


_ROOTS = _internal_roots()
_MARKERS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


def _is_internal(code: types.CodeType) -> bool:
    filename = code.co_filename
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return True
    path = os.path.abspath(filename)
    return path.startswith(_ROOTS) or any(marker in path for marker in _MARKERS)


def user_source(skip: int = 1) -> str | None:
    """``file:line`` of the innermost user frame above the caller, or None."""
    try:
        frame: types.FrameType | None = sys._getframe(skip + 1)
    except ValueError:
        return None
    for _ in range(MAX_DEPTH):
        if frame is None:
            return None
        code = frame.f_code
        known = _internal_code.get(id(code))
        if known is None:
            known = _internal_code[id(code)] = (code, _is_internal(code))
        if not known[1]:
            key = (id(code), frame.f_lineno)
            text = _formatted.get(key)
            if text is None:
                text = _formatted[key] = f"{code.co_filename}:{frame.f_lineno}"
            return text
        frame = frame.f_back
    return None
