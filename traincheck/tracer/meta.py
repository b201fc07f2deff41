"""Meta-variables (step, stage, user annotations) of one traced process.

Step and stage are detected, never configured: ``step`` counts completed
optimizer steps (the maximum over optimizers, so two optimizers stepping once
per iteration still count one step per iteration), and ``stage`` follows the
grad mode at each training API once training has begun. ``Module.training`` is
deliberately not folded in: a model left in eval mode during training must show
up as an argument value, not silently turn the run into "eval".
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping

from traincheck.events import Scalar, Stage

_UNSET = object()
"""Marks an annotation key that had no value before ``annotate`` set it."""


class MetaState:
    """The current step, stage and annotations of one traced process.

    ``on_change(key, value)`` is called for every change, so the tracer can emit
    a ``MetaChange`` event; this class itself knows nothing about events.
    """

    def __init__(self, on_change: Callable[[str, Scalar], None]) -> None:
        self._on_change = on_change
        self.step = 0
        self.stage: Stage = "init"
        self._training_started = False
        self._stage_override: Stage | None = None
        self._optimizer_steps: dict[int, int] = {}
        self.annotations: dict[str, Scalar] = {}

    def enter_training_api(self, grad_enabled: bool, inference_mode: bool) -> Stage:
        """Update the stage at the entry of a training API and return it."""
        if self._stage_override is not None:
            stage = self._stage_override
        elif not self._training_started:
            if grad_enabled and not inference_mode:
                self._training_started = True
                stage = "train"
            else:
                stage = "init"
        else:
            stage = "eval" if (inference_mode or not grad_enabled) else "train"
        if stage != self.stage:
            self.stage = stage
            self._on_change("stage", stage)
        return stage

    def complete_optimizer_step(self, optimizer_key: int) -> int:
        """Count one finished step of an optimizer; return the (possibly new) step."""
        count = self._optimizer_steps.get(optimizer_key, 0) + 1
        self._optimizer_steps[optimizer_key] = count
        if count > self.step:
            self.step = count
            self._on_change("step", count)
        return self.step

    def set_annotation(self, key: str, value: Scalar) -> object:
        """Set one annotation, report the change, and return the previous value."""
        if key == "stage":
            previous: object = self._stage_override if self._stage_override else _UNSET
            self._stage_override = value  # type: ignore[assignment]
            if value is not None and value != self.stage:
                self.stage = value  # type: ignore[assignment]
                self._on_change("stage", value)
            return previous
        previous = self.annotations.get(key, _UNSET)
        if value is None:
            self.annotations.pop(key, None)
        else:
            self.annotations[key] = value
        if previous is _UNSET or previous != value:
            self._on_change(key, value)
        return previous


class Annotation:
    """What ``annotate`` returns: already applied, and a context manager that undoes it.

    ``annotate(epoch=3)`` sets the value for the rest of the run;
    ``with annotate(phase="warmup"): ...`` restores the previous values on exit.
    """

    def __init__(self, meta: MetaState | None, values: Mapping[str, Scalar]) -> None:
        self._meta = meta
        self._previous: dict[str, object] = {}
        if meta is not None:
            for key, value in values.items():
                self._previous[key] = meta.set_annotation(key, value)

    def __enter__(self) -> Annotation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        if self._meta is None:
            return
        for key, previous in reversed(self._previous.items()):
            self._meta.set_annotation(key, None if previous is _UNSET else previous)  # type: ignore[arg-type]
