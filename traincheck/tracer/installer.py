"""Wire the hooks to a tracer: the one module that knows both.

The hook modules (:mod:`~traincheck.tracer.hooks`, :mod:`~traincheck.tracer.apis`,
:mod:`~traincheck.tracer.extra_modules`) know the tracer only as a
:class:`~traincheck.tracer.recorder.Recorder`, and the tracer
(:mod:`~traincheck.tracer.runtime`) imports no hook. This module, above both,
hands the tracer to each hook module, shares one
:class:`~traincheck.tracer.patches.Patches` between them so that uninstalling
restores everything, and keeps the installed hooks in
:mod:`~traincheck.tracer.state` (one set per process, reached from there when the
tracer is disarmed). It runs right after ``import torch`` completes (see
:mod:`~traincheck.tracer.bootstrap`), never on the per-call path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from traincheck.tracer import apis, extra_modules, state, training_apis
from traincheck.tracer.diagnostics import log
from traincheck.tracer.hooks import TorchHooks

if TYPE_CHECKING:
    from traincheck.tracer.runtime import Tracer


def install(tracer: Tracer) -> TorchHooks:
    """Install the tracer's torch hooks and wrappers (a second call only says so)."""
    installed = state.hooks
    if isinstance(installed, TorchHooks) and installed.tracer is tracer:
        hooks = installed
    else:
        hooks = TorchHooks(tracer)
        state.hooks = hooks
    if hooks.installed:
        log("torch hooks already installed; second install ignored")
        return hooks
    tracer.attach_torch(torch)
    hooks.install()
    apis.install(tracer, hooks.patches)
    training_apis.install(tracer, hooks.patches)
    extra_modules.install(tracer, hooks.patches, tracer.plan.modules_to_instr)
    return hooks


def uninstall() -> None:
    """Remove the installed hooks and wrappers, if any."""
    if state.hooks is not None:
        state.hooks.uninstall()
