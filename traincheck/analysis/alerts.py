"""Turn a :class:`Violation` into the alert text users read (terminal and logs)."""

from __future__ import annotations

from traincheck.analysis.violations import Violation
from traincheck.events import ApiCall
from traincheck.records import FindingSummary, ResultsSummary
from traincheck.terminal_text import printable

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


MAX_SOURCES_SHOWN = 2


def finding_lines(summary: ResultsSummary) -> list[str]:
    """The findings of a summary as a short block: one headline and one evidence line each.

    Printed at the end of every check (``traincheck-run``, ``-check``, ``-attach``)
    from the same summary the result files hold, so all three say the same.
    """
    findings = summary.findings
    if not findings:
        return []
    noun = "finding" if len(findings) == 1 else "findings"
    lines = [f"{len(findings)} {noun}, most likely root cause first:"]
    for finding in findings:
        lines.append(f"  {finding.rank}. {finding.headline}")
        lines.append(INDENT + "   " + finding_evidence(finding))
    return [printable(line) for line in lines]


def finding_evidence(finding: FindingSummary) -> str:
    steps = (
        f"step {finding.first_step}"
        if finding.first_step == finding.last_step
        else f"steps {finding.first_step}-{finding.last_step}"
    )
    text = (
        f"{finding.invariants} invariant{'s' if finding.invariants != 1 else ''}, "
        f"{finding.violations} violation{'s' if finding.violations != 1 else ''}, {steps}, "
        f"rank{'s' if len(finding.ranks) != 1 else ''} {', '.join(map(str, finding.ranks))}"
    )
    if finding.sources:
        text += "; at " + ", ".join(finding.sources[:MAX_SOURCES_SHOWN])
    return text
