"""``--modules-to-instr``: generic wrappers on the public functions of chosen modules.

Only when the user asks (``torch.nn.functional``, ``transformers.trainer``, their
own package): default tracing stays on the few hooks of :mod:`traincheck.tracer.hooks`
and :mod:`traincheck.tracer.apis`, because wrapping hundreds of functions costs
a Python call per use. A module not imported yet is wrapped right after its
import completes. Event names are ``<module>.<function>`` as the user spelled
the module (``torch.nn.functional.cross_entropy``). ``torch`` itself names the
default set and adds nothing.

A hook module: it sees the tracer only as a
:class:`~traincheck.tracer.recorder.Recorder`, records its replacements in the
shared :class:`~traincheck.tracer.patches.Patches`, and is installed by
:mod:`~traincheck.tracer.installer`.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Sequence
from typing import Any

from traincheck.events import ArgValue
from traincheck.tracer.api_wrapper import traced
from traincheck.tracer.importhook import when_imported
from traincheck.tracer.patches import Patches
from traincheck.tracer.recorder import Recorder
from traincheck.tracer.summaries import summarize

DEFAULT_MODULE = "torch"
MAX_ARGS_SUMMARIZED = 4


def install(tracer: Recorder, patches: Patches, modules: Sequence[str]) -> None:
    """Wrap the public functions of each module (now, or when it gets imported)."""
    for name in modules:
        if name != DEFAULT_MODULE:
            when_imported(name, functools.partial(wrap_module, tracer, patches, name))


def public_functions(module: types.ModuleType) -> list[str]:
    """Names of the module's public plain or builtin functions (no classes, no submodules)."""
    exported = getattr(module, "__all__", None)
    names = exported if isinstance(exported, (list, tuple)) else dir(module)
    out = []
    for attr in names:
        if not isinstance(attr, str) or attr.startswith("_"):
            continue
        value = getattr(module, attr, None)
        if inspect.isfunction(value) or inspect.isbuiltin(value):
            out.append(attr)
    return sorted(out)


def wrap_module(tracer: Recorder, patches: Patches, name: str, module: types.ModuleType) -> None:
    """Wrap the module's public functions that the plan traces (``<name>.<function>``)."""
    try:
        for attr in public_functions(module):
            api = f"{name}.{attr}"
            if tracer.plan.traces(api):
                original = getattr(module, attr)
                patches.patch(module, attr, traced(tracer, api, original, _args, _result))
    except Exception as exc:
        tracer.report_error(f"wrapping {name}", exc)


def _args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[ArgValue, ...]:
    out = [summarize(f"arg{i}", value) for i, value in enumerate(args[:MAX_ARGS_SUMMARIZED])]
    out.extend(summarize(key, value) for key, value in list(kwargs.items())[:MAX_ARGS_SUMMARIZED])
    return tuple(out)


def _result(args: tuple[Any, ...], value: Any) -> ArgValue | None:
    return summarize("result", value)
