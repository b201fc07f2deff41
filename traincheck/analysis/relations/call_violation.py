"""Building a :class:`Violation` from the call it is located at: the one place relations make one.

Every relation reports through :func:`call_violation`, so what a violation carries
(its invariant's id, text and support; the step, stage, process and thread it is
located at) is filled in the same way for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from traincheck.analysis.calls import CallStart
from traincheck.analysis.relations.base import InvariantResult
from traincheck.analysis.violations import Violation
from traincheck.events import Event


def call_violation(
    result: InvariantResult[Any],
    start: CallStart,
    *,
    what: str,
    expected: str,
    observed: str,
    apis: Sequence[str] = (),
    variables: Sequence[str] = (),
    events: Sequence[Event] = (),
    earlier: Sequence[Event] = (),
    symptom: bool = False,
) -> Violation:
    """A violation located at ``start`` (its step, stage, process and thread).

    Its evidence is ``start``'s call event, preceded by the ``earlier`` events (a
    previous call that opened the window being judged) and followed by ``events``;
    ``apis`` defaults to ``start``'s API.
    """
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
        events=(*earlier, ev, *events),
        num_positive_examples=inv.num_positive_examples,
        num_negative_examples=inv.num_negative_examples,
        symptom=symptom,
    )
