"""The user's source line on traced calls: found past library frames, cached, cheap."""

from __future__ import annotations

import torch

from traincheck.tracer import source
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


def test_source_is_looked_up_once_per_place() -> None:
    """What keeps the lookup near a microsecond, checked without a clock (timings on
    2 shared cores say nothing): after the first call from a place, a call from the
    same place classifies no new code object and formats no new text, it returns the
    very string it returned before."""
    module = torch.nn.Linear(2, 2)
    results: list[str | None] = []
    sizes: list[tuple[int, int]] = []

    def hook(_m: object, _a: object) -> None:
        results.append(user_source(skip=1))
        sizes.append((len(source._internal_code), len(source._formatted)))

    module.register_forward_pre_hook(hook)
    line = _this_line() + 2
    for _ in range(3):
        module(torch.zeros(1, 2))  # one place: this line
    assert results[0] == f"{__file__}:{line}"
    assert results[1] is results[0] and results[2] is results[0]
    assert sizes[1] == sizes[0] and sizes[2] == sizes[0]
