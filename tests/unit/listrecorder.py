"""``ListRecorder``: a real in-process :class:`~traincheck.tracer.recorder.Recorder` for
hook tests. It keeps the calls it is given, in memory, with their nesting depth (the
publishing side is tested elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from traincheck.events import ArgValue, StatePhase
from traincheck.tracer.hooks import TorchHooks
from traincheck.tracer.meta import MetaState
from traincheck.tracing_plan import TracingPlan


@dataclass
class Call:
    api: str
    args: dict[str, ArgValue]
    depth: int
    result: ArgValue | None = None
    exception: str | None = None


@dataclass
class ListRecorder:
    """Records calls in memory; the nesting depth stands for the parent id."""

    plan: TracingPlan = field(default_factory=TracingPlan)
    armed: bool = True
    recording: bool = True
    calls: dict[int, Call] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _open: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.meta = MetaState(lambda key, value: None)

    def begin_call(
        self, api: str, args: tuple[ArgValue, ...] = (), *, training_api: bool = True
    ) -> int:
        call_id = len(self.calls) + 1
        self.calls[call_id] = Call(api, {a.name: a for a in args}, len(self._open))
        self._open.append(call_id)
        return call_id

    def end_call(
        self,
        call_id: int,
        api: str,
        *,
        result: ArgValue | None = None,
        exception: BaseException | None = None,
    ) -> None:
        assert self._open.pop() == call_id
        self.calls[call_id].result = result
        self.calls[call_id].exception = type(exception).__name__ if exception else None

    def record_params(
        self,
        call_id: int,
        phase: StatePhase,
        params: Sequence[tuple[str, torch.Tensor]],
        *,
        with_digest: bool,
        aliases: Mapping[str, tuple[str, ...]],
    ) -> None:
        pass

    def flush_at_step(self) -> None:
        pass

    def learn_rank(self, rank: int, world_size: int) -> None:
        pass

    def enter_backward(self) -> bool:
        return True

    def exit_backward(self) -> None:
        pass

    def report_error(self, where: str, exc: BaseException) -> None:
        self.errors.append(f"{where}: {exc}")

    def of(self, api: str) -> list[Call]:
        return [c for c in self.calls.values() if c.api == api]


def installed(plan: TracingPlan) -> Iterator[ListRecorder]:
    """Every hook of the tracer installed against a ``ListRecorder`` (one iteration)."""
    from traincheck.tracer import apis, training_apis

    recorder = ListRecorder(plan=plan)
    hooks = TorchHooks(recorder)
    hooks.install()
    apis.install(recorder, hooks.patches)
    training_apis.install(recorder, hooks.patches)
    try:
        yield recorder
    finally:
        hooks.uninstall()
