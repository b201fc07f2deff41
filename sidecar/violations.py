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
