"""The tracer's process-wide state lives in ``traincheck.tracer.state``, and only there."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

import traincheck.tracer
from traincheck.tracer import state

TRACER_DIR = Path(traincheck.tracer.__file__).parent


def test_no_other_tracer_module_rebinds_a_module_global() -> None:
    """A ``global`` statement elsewhere would be process state the fork reset misses."""
    offenders = [
        f"{path.name}:{node.lineno}"
        for path in sorted(TRACER_DIR.rglob("*.py"))
        if path.name != "state.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Global)
    ]
    assert offenders == []


class _FakeTracer:
    def __init__(self) -> None:
        self.disarmed: list[str] = []

    def disarm(self, reason: str) -> None:
        self.disarmed.append(reason)
        state.release(self)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def empty_state() -> Iterator[None]:
    yield
    state.tracer = None
    state.hooks = None


def test_release_removes_the_hooks_of_that_tracer_only() -> None:
    ours, other = _FakeTracer(), _FakeTracer()
    uninstalled: list[object] = []
    state.hooks = SimpleNamespace(tracer=ours, uninstall=lambda: uninstalled.append(ours))
    state.set_current(ours)  # type: ignore[arg-type]
    state.release(other)  # type: ignore[arg-type]
    assert uninstalled == [] and state.current() is ours
    state.release(ours)  # type: ignore[arg-type]
    assert uninstalled == [ours] and state.current() is None


def test_disarm_current_reaches_the_tracer_without_importing_it() -> None:
    state.disarm_current("nobody armed")  # no tracer: nothing happens
    tracer = _FakeTracer()
    state.set_current(tracer)  # type: ignore[arg-type]
    state.disarm_current("DataLoader worker")
    assert tracer.disarmed == ["DataLoader worker"] and state.current() is None
