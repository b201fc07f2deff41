"""``traincheck.annotate``: user-set meta-variables, applied to the process's tracer.

Kept apart from :mod:`~traincheck.tracer.meta` because it is the one piece of the
meta-variables that must find the *current* tracer (through
:mod:`~traincheck.tracer.state`); ``MetaState`` itself stays free of process state.
It validates its arguments even in an untraced process, so a typo fails the
same way traced or not.
"""

from __future__ import annotations

from typing import get_args

from traincheck.events import Scalar, Stage
from traincheck.tracer import state
from traincheck.tracer.meta import Annotation

STAGES: frozenset[str] = frozenset(get_args(Stage))


def annotate(**meta: object) -> Annotation:
    """Set custom meta-variables on later events (``annotate(epoch=2, phase="warmup")``).

    Values must be scalars (bool, int, float, str or None; None clears a key);
    other objects are recorded by their ``str``. ``stage`` accepts only
    ``"init"``, ``"train"``, ``"eval"`` or ``"test"`` (never detected: a test pass
    makes the same calls as a validation pass) and overrides the detected stage
    while set. ``step`` is counted from optimizer steps and cannot be annotated.
    Does nothing (but still validates) when the process is not traced.
    """
    values = {key: _scalar(value) for key, value in meta.items()}
    if "step" in values:
        raise ValueError("traincheck.annotate: 'step' is counted from optimizer steps")
    stage = values.get("stage")
    if stage is not None and stage not in STAGES:
        raise ValueError(
            f"traincheck.annotate: stage must be one of {sorted(STAGES)}, got {stage!r}"
        )
    tracer = state.current()
    return Annotation(tracer.meta if tracer is not None else None, values)


def _scalar(value: object) -> Scalar:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
