"""Building a :class:`Violation` from the call that revealed it (shared by the relations)."""

from __future__ import annotations

from collections.abc import Sequence

from traincheck.analysis.calls import CallStart
from traincheck.analysis.relations.base import InvariantResult
from traincheck.analysis.violations import Violation
from traincheck.events import Event


def call_violation(
    result: InvariantResult,
    start: CallStart,
    *,
    what: str,
    expected: str,
    observed: str,
    apis: Sequence[str] = (),
    variables: Sequence[str] = (),
    events: Sequence[Event] = (),
) -> Violation:
    """A violation located at ``start`` (its step, stage, process and thread)."""
    inv, ev = result.invariant, start.event
    return Violation(
        invariant_id=inv.id,
        relation=inv.relation,
        text_description=inv.text_description,
        step=ev.step,
        stage=ev.stage,
        pid=start.pid,
        rank=start.rank,
        thread=ev.thread,
        apis=tuple(apis) or (start.api,),
        variables=tuple(variables),
        what=what,
        expected=expected,
        observed=observed,
        events=(ev, *events),
        num_positive_examples=inv.num_positive_examples,
        num_negative_examples=inv.num_negative_examples,
    )
