"""``traced``: the generic Python wrapper that turns one API call into ``ApiCall``/``ApiReturn``.

Shared by the targeted wrappers of :mod:`~traincheck.tracer.apis` and the
``--modules-to-instr`` wrappers of :mod:`~traincheck.tracer.extra_modules`, so
both record calls with the same guards: the original runs exactly once with the
user's arguments, its result and exceptions pass through unchanged, and a
failure of the tracer is reported through the recorder, never raised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from traincheck.events import ArgValue
from traincheck.tracer.recorder import Recorder

ArgSummarizer = Callable[[tuple[Any, ...], dict[str, Any]], tuple[ArgValue, ...]]
ResultSummarizer = Callable[[tuple[Any, ...], Any], ArgValue | None]


def traced(
    tracer: Recorder,
    api: str,
    original: Callable[..., Any],
    summarize_args: ArgSummarizer,
    summarize_result: ResultSummarizer | None = None,
    *,
    outermost: threading.local | None = None,
    before: Callable[[Recorder, tuple[Any, ...]], None] | None = None,
) -> Callable[..., Any]:
    """A wrapper emitting ``ApiCall``/``ApiReturn`` around ``original``.

    With ``outermost`` (a thread-local shared by related APIs), calls made while
    another of them is running are passed straight through.
    """

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not tracer.armed or not tracer.recording:
            return original(*args, **kwargs)
        if outermost is not None and getattr(outermost, "active", False):
            return original(*args, **kwargs)
        try:
            if before is not None:
                before(tracer, args)
            call_id = tracer.begin_call(api, summarize_args(args, kwargs), training_api=False)
        except Exception as exc:
            tracer.report_error(f"{api} wrapper", exc)
            return original(*args, **kwargs)
        if outermost is not None:
            outermost.active = True
        try:
            value = original(*args, **kwargs)
        except BaseException as exc:
            _end(tracer, call_id, api, None, exc)
            raise
        finally:
            if outermost is not None:
                outermost.active = False
        result = None
        if summarize_result is not None:
            try:
                result = summarize_result(args, value)
            except Exception as exc:
                tracer.report_error(f"{api} result", exc)
        _end(tracer, call_id, api, result, None)
        return value

    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    return wrapper


def _end(
    tracer: Recorder, call_id: int, api: str, result: ArgValue | None, exc: BaseException | None
) -> None:
    try:
        if tracer.armed:
            tracer.end_call(call_id, api, result=result, exception=exc)
    except Exception as error:
        tracer.report_error(f"{api} wrapper", error)
