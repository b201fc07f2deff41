"""The user's source line on traced calls: found past library frames, cached, cheap."""

from __future__ import annotations

import time

import torch

from traincheck.tracer.source import user_source


def _line_of_call() -> tuple[str | None, int]:
    """Call user_source from inside a torch forward pre-hook (a library frame stack)."""
    seen: list[str | None] = []
    module = torch.nn.Linear(2, 2)
    module.register_forward_pre_hook(lambda _m, _a: seen.append(user_source(skip=1)))
    line = _this_line() + 1
    module(torch.zeros(1, 2))
    return seen[0], line


def _this_line() -> int:
    import sys

    return sys._getframe(1).f_lineno


def test_source_is_the_users_line_past_torch_frames() -> None:
    source, line = _line_of_call()
    assert source == f"{__file__}:{line}"


def test_generated_code_frames_are_skipped() -> None:
    # exec'd code has a "<string>" file name: never the user's line; the caller's is.
    namespace: dict[str, object] = {"user_source": user_source}
    line = _this_line() + 1
    exec("result = (lambda: user_source(skip=0))()", namespace)
    assert namespace["result"] == f"{__file__}:{line}"


def test_source_costs_about_a_microsecond() -> None:
    """Measured, not asserted tightly: 2 shared cores. A generous bound catches a
    regression to hashing code objects or formatting every time (~3x slower)."""
    module = torch.nn.Linear(2, 2)
    timings: list[float] = []

    def hook(_m: object, _a: object) -> None:
        started = time.perf_counter()
        for _ in range(20_000):
            user_source(skip=1)
        timings.append((time.perf_counter() - started) / 20_000)

    module.register_forward_pre_hook(hook)
    for _ in range(3):
        module(torch.zeros(1, 2))
    assert min(timings) < 20e-6
