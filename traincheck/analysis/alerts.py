"""Turn a :class:`Violation` into the alert text users read (terminal and logs)."""

from __future__ import annotations

from traincheck.analysis.violations import Violation
from traincheck.events import ApiCall

INDENT = "    "


def headline(v: Violation) -> str:
    """One line that is enough to act on: what broke, step, rank, the API or variable."""
    return f"VIOLATION at step {v.step} (rank {v.rank}): {v.what}"


def evidence_lines(v: Violation) -> list[str]:
    """Expected vs observed, where, which invariant and how much it is worth."""
    where = f"pid {v.pid}, thread {v.thread}, stage {v.stage}"
    if v.detection_step is not None and v.detection_step != v.step:
        where += f", detected at step {v.detection_step}"
    if v.occurrence > 1:
        where += f", occurrence {v.occurrence}"
    lines = [
        f"expected: {v.expected}",
        f"observed: {v.observed}",
        f"where:    {where}",
    ]
    source = source_line(v)
    if source:
        lines.append(f"at:       {source}")
    lines += [
        f"invariant {v.invariant_id} ({v.relation}): {v.text_description}",
        f"evidence: {_evidence(v)}",
    ]
    return lines


def format_alert(v: Violation) -> str:
    """A headline naming what broke, then indented evidence lines.

    The headline alone must be enough to act on (it names the API or variable
    and the step); the evidence says what healthy runs did, what this run did,
    and how much the invariant is worth (how often it held when it was learnt).
    """
    return "\n".join([headline(v), *(INDENT + line for line in evidence_lines(v))])


def source_line(v: Violation) -> str | None:
    """The user's source line of the offending call, when the tracer recorded one."""
    for event in reversed(v.events):
        if isinstance(event, ApiCall) and event.source:
            return event.source
    return None


def _evidence(v: Violation) -> str:
    total = v.num_positive_examples + v.num_negative_examples
    if v.num_negative_examples == 0:
        return f"held in all {v.num_positive_examples} examples of the healthy runs"
    return (
        f"held in {v.num_positive_examples} of {total} examples of the healthy runs; "
        f"the other {v.num_negative_examples} are excluded by its precondition"
    )
