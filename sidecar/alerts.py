"""Turn a :class:`Violation` into the alert text users read (terminal and logs)."""

from __future__ import annotations

from traincheck.sidecar.violations import Violation

INDENT = "    "


def format_alert(v: Violation) -> str:
    """A headline naming what broke, then indented evidence lines.

    The headline alone must be enough to act on (it names the API or variable
    and the step); the evidence says what healthy runs did, what this run did,
    and how much the invariant is worth (how often it held when it was learnt).
    """
    where = f"pid {v.pid}, thread {v.thread}, stage {v.stage}"
    if v.occurrence > 1:
        where += f", occurrence {v.occurrence}"
    lines = [
        f"VIOLATION at step {v.step} (rank {v.rank}): {v.what}",
        f"{INDENT}expected: {v.expected}",
        f"{INDENT}observed: {v.observed}",
        f"{INDENT}where:    {where}",
        f"{INDENT}invariant {v.invariant_id} ({v.relation}): {v.text_description}",
        f"{INDENT}evidence: {_evidence(v)}",
    ]
    return "\n".join(lines)


def _evidence(v: Violation) -> str:
    total = v.num_positive_examples + v.num_negative_examples
    if v.num_negative_examples == 0:
        return f"held in all {v.num_positive_examples} examples of the healthy runs"
    return (
        f"held in {v.num_positive_examples} of {total} examples of the healthy runs; "
        f"the other {v.num_negative_examples} are excluded by its precondition"
    )
