"""What the checker reports: one :class:`Violation` per invariant broken at one point."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import msgspec

from traincheck.events import Event


@dataclass(frozen=True)
class Violation:
    """An invariant that did not hold, in words a user can act on, with its evidence.

    ``what`` is the headline (what broke, naming the API or variable);
    ``expected``/``observed`` contrast the healthy behaviour with this run's;
    ``events`` are the offending events. ``occurrence`` counts violations of the
    same invariant so far (1 = first), so a live display can show the first one
    in full and summarise the repeats.

    The checker fills in the last three: ``detection_step`` (the step the stream
    had reached when the violation was found, which is later than ``step`` for
    violations only the end of the run can settle), ``seq`` (detection order, the
    same live and offline) and ``passing_example`` (the most recent point where
    the same invariant held, to contrast with the offending one).
    """

    invariant_id: str
    relation: str
    text_description: str
    step: int
    stage: str
    pid: int
    rank: int
    thread: int
    apis: tuple[str, ...]
    variables: tuple[str, ...]
    what: str
    expected: str
    observed: str
    events: tuple[Event, ...] = ()
    num_positive_examples: int = 0
    num_negative_examples: int = 0
    occurrence: int = 1
    detection_step: int | None = None
    seq: int = 0
    passing_example: dict[str, Any] | None = None
    symptom: bool = False
    """About a value the training computes (the loss, a gradient norm), which a bug
    anywhere upstream can move, many steps after the bug: findings fold it into an
    earlier finding on the same ranks whatever the distance."""

    @property
    def state_based(self) -> bool:
        """Whether it is about a variable's state rather than about which APIs ran."""
        return bool(self.variables)

    def root_cause_key(self) -> tuple[int, int, int]:
        """Sort key that puts the most likely root cause first.

        Earlier steps first (a cause precedes its effects). Within a step, a
        violation about the program's control flow (an API missing, misordered or
        called with other arguments) comes before one about variable state,
        because a wrong call sequence is what makes states go wrong, not the other
        way round. Ties keep detection order, which is stream order.
        """
        return (self.step, 1 if self.state_based else 0, self.seq)

    def numbered(self, occurrence: int) -> Violation:
        return replace(self, occurrence=occurrence)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready form; events keep their schema tag as ``type``."""
        return {
            "invariant_id": self.invariant_id,
            "relation": self.relation,
            "text_description": self.text_description,
            "step": self.step,
            "stage": self.stage,
            "pid": self.pid,
            "rank": self.rank,
            "thread": self.thread,
            "apis": list(self.apis),
            "variables": list(self.variables),
            "what": self.what,
            "expected": self.expected,
            "observed": self.observed,
            "occurrence": self.occurrence,
            "detection_step": self.detection_step,
            "seq": self.seq,
            "passing_example": self.passing_example,
            "events": [event_to_json(e) for e in self.events],
        }


def event_to_json(value: Any) -> Any:
    """An event as a dict of its named fields (the wire form is positional)."""
    if isinstance(value, msgspec.Struct):
        out = {}
        tag = type(value).__struct_config__.tag
        if tag:
            out["type"] = tag
        for name in value.__struct_fields__:
            out[name] = event_to_json(getattr(value, name))
        return out
    if isinstance(value, (list, tuple)):
        return [event_to_json(v) for v in value]
    return value
