"""``initialize()``: what our ``sitecustomize`` runs in every Python process.

It chains the user's own ``sitecustomize`` (ours shadows it on ``PYTHONPATH``),
then arms the tracer only where it belongs (see
:mod:`traincheck.tracer.activation`), and defers every torch hook until torch
finishes importing. It fails open: an error is one ``traincheck:`` line on
stderr and the program runs untraced, unless ``TRAINCHECK_DEBUG=1`` or
``swallow_exceptions=False`` (tests) asks for the exception.

This is the top of the tracer's layers, the only module that puts the pieces
together: configuration (:class:`~traincheck.tracer.config.TracerConfig`, the
environment read once), activation, the tracer (:mod:`~traincheck.tracer.runtime`)
and, once torch is imported, the installer that wires the hooks to it.

Importing this module is cheap and imports neither torch nor ZeroMQ: most
processes that run it (compilers, helpers, untraced tools) need neither. The
tracer's own modules are imported only once a process is to be armed.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import TYPE_CHECKING

import traincheck.bootstrap
from traincheck.tracer.config import TracerConfig
from traincheck.tracer.diagnostics import log

if TYPE_CHECKING:
    from traincheck.tracer.runtime import Tracer

_BOOTSTRAP_DIR = os.path.dirname(os.path.abspath(traincheck.bootstrap.__file__))


def initialize(*, swallow_exceptions: bool = True) -> None:
    """Chain the user's ``sitecustomize``, then arm the tracer if this process is traced.

    The configuration is read after the chained ``sitecustomize`` ran: that one
    may set variables of its own.
    """
    try:
        chain_user_sitecustomize()
        _arm_if_wanted(TracerConfig.read())
    except Exception as exc:
        if not swallow_exceptions or TracerConfig.read().debug:
            raise
        log(f"tracing disabled in this process ({type(exc).__name__}: {exc})")


def bootstrap_dir() -> str:
    """The directory holding our ``sitecustomize.py`` (overridable by the launcher)."""
    return TracerConfig.read().bootstrap_dir or _BOOTSTRAP_DIR


def chain_user_sitecustomize() -> None:
    """Import the ``sitecustomize`` ours shadows, the way ``site`` would have.

    Only when ours is the one being run: our directory is taken off
    ``sys.path``, the next ``sitecustomize`` is imported, and the path and our
    module are restored, so real child processes still find ours first.
    Errors in the user's module are reported exactly as ``site`` reports them.
    """
    ours = sys.modules.get("sitecustomize")
    our_dir = bootstrap_dir()
    if ours is None or not _is_ours(ours, our_dir):
        return
    removed = [(i, entry) for i, entry in enumerate(sys.path) if _same_dir(entry, our_dir)]
    for i, _ in reversed(removed):
        del sys.path[i]
    del sys.modules["sitecustomize"]
    try:
        importlib.import_module("sitecustomize")
    except ImportError as exc:
        if exc.name != "sitecustomize":
            _report_like_site(exc)
    except Exception as exc:
        _report_like_site(exc)
    finally:
        for i, entry in removed:
            sys.path.insert(i, entry)
        sys.modules["sitecustomize"] = ours


def _arm_if_wanted(config: TracerConfig) -> None:
    if not config.wants_tracing:
        return
    from traincheck.tracer import state

    if state.current() is not None:
        return
    from traincheck.tracer.activation import Activation, decide

    decision, _reason = decide(sys.orig_argv, config)
    if decision is Activation.SKIP:
        return
    from traincheck.tracer.runtime import Tracer

    tracer = Tracer(config, gated=decision is Activation.ARM_GATED)
    tracer.start()
    from traincheck.tracer.importhook import when_imported

    when_imported("torch", lambda module: _install_torch_hooks(tracer))


def _install_torch_hooks(tracer: Tracer) -> None:
    """Runs right after ``import torch`` completes; must never fail that import."""
    from traincheck.tracer import installer

    if not tracer.armed:
        return
    try:
        installer.install(tracer)
    except Exception as exc:
        tracer.report_error("installing torch hooks", exc)
        tracer.disarm("hook installation failed")


def _is_ours(module: types.ModuleType, our_dir: str) -> bool:
    path = getattr(module, "__file__", None)
    return path is not None and _same_dir(os.path.dirname(path), our_dir)


def _same_dir(entry: str, our_dir: str) -> bool:
    try:
        return os.path.realpath(entry or os.curdir) == os.path.realpath(our_dir)
    except (OSError, ValueError):
        return False


def _report_like_site(exc: BaseException) -> None:
    """``site``'s own message for a failing ``sitecustomize``."""
    if sys.flags.verbose:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    else:
        sys.stderr.write(
            "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n"
            f"{type(exc).__name__}: {exc}\n"
        )
