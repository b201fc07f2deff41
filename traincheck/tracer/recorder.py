"""``Recorder``: the narrow interface through which hooks report to the tracer.

The hooks (:mod:`~traincheck.tracer.hooks`, :mod:`~traincheck.tracer.apis`,
:mod:`~traincheck.tracer.extra_modules`) and state capture
(:mod:`~traincheck.tracer.varstate`) turn torch calls into events; these members
are all they need of the tracer. Typing them against this Protocol rather than
the ``Tracer`` class keeps them below it in the import graph: the tracer's
lifecycle, publishing and fork handling can change without touching a hook, and
no import has to run upwards (the old cycle between the tracer and its hooks).

A Protocol costs nothing at run time: hooks hold the tracer object itself and
call its methods directly, with no adapter on the training thread's per-call path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from traincheck.events import ArgValue, StatePhase
    from traincheck.tracer.meta import MetaState
    from traincheck.tracing_plan import TracingPlan


class Recorder(Protocol):
    """What a hook may read and call on the tracer of its process."""

    armed: bool
    """False once the process is disarmed: hooks then pass calls straight through."""
    recording: bool
    """False on steps the plan samples out: hooks then skip their work."""
    plan: TracingPlan
    meta: MetaState

    def begin_call(
        self, api: str, args: tuple[ArgValue, ...] = (), *, training_api: bool = True
    ) -> int:
        """Emit ``ApiCall``; return the call id ``end_call`` closes."""
        ...

    def end_call(
        self,
        call_id: int,
        api: str,
        *,
        result: ArgValue | None = None,
        exception: BaseException | None = None,
    ) -> None:
        """Emit ``ApiReturn`` for a call ``begin_call`` opened."""
        ...

    def record_params(
        self,
        call_id: int,
        phase: StatePhase,
        params: Sequence[tuple[str, torch.Tensor]],
        *,
        with_digest: bool,
        aliases: Mapping[str, tuple[str, ...]],
    ) -> None:
        """Emit the named tensors' states at one point of a call (``aliases``: the
        other paths of each shared parameter, by name)."""
        ...

    def flush_at_step(self) -> None:
        """An optimizer step ended: a good moment to send what is queued."""
        ...

    def learn_rank(self, rank: int, world_size: int) -> None:
        """The process joined the default process group: its rank from now on."""
        ...

    def enter_backward(self) -> bool:
        """Count a backward call; True if it is the outermost one in the process."""
        ...

    def exit_backward(self) -> None: ...

    def report_error(self, where: str, exc: BaseException) -> None:
        """Count a failure inside a hook; never raises unless in debug mode."""
        ...
