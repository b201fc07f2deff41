"""The training loss per step, as the tracer saw it at ``Tensor.backward``: for the
report's timeline, so a finding's marks sit next to what the loss did.

The tracer records the value of the tensor ``backward()`` was called on when it is a
one-element CPU tensor (never a device sync); each step's point is the mean over
that step's backward calls on the training stage (the micro-batches of one optimizer
step under gradient accumulation) of the lowest rank seen, so a multi-rank job
draws one line. Steps without a readable loss (a CUDA loss, a loop that does not
call ``backward`` on the loss) have no point.
"""

from __future__ import annotations

import math

from traincheck.catalogue import LOSS_ARG, TENSOR_BACKWARD
from traincheck.events import ApiCall, StoredEvent

MAX_STEPS = 100_000
"""Points kept at most (the earliest): memory stays bounded on very long runs."""


class LossSeries:
    """Collects the loss per step from a stream of stored events."""

    def __init__(self) -> None:
        self._rank: int | None = None
        self._sums: dict[int, tuple[float, int]] = {}

    def feed(self, stored: StoredEvent) -> None:
        event = stored.event
        if type(event) is not ApiCall or event.api != TENSOR_BACKWARD or event.stage != "train":
            return
        value = next((a.value for a in event.args if a.name == LOSS_ARG), None)
        if not isinstance(value, float) or not math.isfinite(value):
            return
        rank = stored.rank if stored.rank >= 0 else 0
        if self._rank is None or rank < self._rank:
            self._rank, self._sums = rank, {}
        if rank != self._rank:
            return
        total, count = self._sums.get(event.step, (0.0, 0))
        if count == 0 and len(self._sums) >= MAX_STEPS:
            return
        self._sums[event.step] = (total + value, count + 1)

    def points(self) -> list[tuple[int, float]]:
        """(step, mean loss) in step order."""
        return [(step, total / count) for step, (total, count) in sorted(self._sums.items())]
