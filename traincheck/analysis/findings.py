"""One bug, one finding: violated invariants grouped by the cause they share.

One missing line of training code typically breaks a dozen invariants: dropping
``scheduler.step()`` violates every "X is followed by ``LRScheduler.step``", and
the state invariants downstream of it. Each is true and each names the bug only
obliquely; together they say one thing. A :class:`Finding` is that one thing:
a subject (an API or a model part), a plain headline, and the invariants that
support it.

Grouping is generic, from what every violation already carries (its APIs, its
variables, its step and ranks) and from what each relation means:

1. **Subjects.** Every violated invariant *mentions* subjects: the APIs of its
   violation and the model parts (a parameter's module path) of its variables.
   It *blames* one of them: the API an ordering relation found missing (B in
   "A is followed by B", A in "B is preceded by A", the callee of "A calls B"),
   or, for a state relation, the model part whose state went wrong.
2. **Cover.** The subject blamed or mentioned by the most violated invariants
   becomes a finding with all the invariants that mention it; repeat with the
   rest (a subject the run never called at all wins ties: a missing API is the
   most specific explanation there is).
3. **Consequences.** A finding that starts at the same step as an earlier one,
   or the step after, on the same ranks, is folded into it when the earlier one
   is about control flow (a wrong call sequence is what makes states and effects
   go wrong: the rule that orders alerts root cause first) or when both speak of
   a same API or model part.

Findings are ranked by their earliest violation's root-cause key, so the first
finding is the most likely root cause. Nothing here matches the text of a known
bug.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from traincheck.analysis.alerts import source_line
from traincheck.analysis.violations import Violation
from traincheck.catalogue import OPTIMIZER_STEP
from traincheck.records import FindingSummary

BLAMED_WEIGHT = 2
"""How much more a subject counts where an invariant blames it than where it is
merely mentioned (an API that is the context of a missing call, not the cause)."""

CONSEQUENCE_WINDOW_STEPS = 1
"""A state going wrong is seen at the latest one step after the call sequence that
caused it went wrong (stale gradients show at the next step's backward)."""

_BLAMED_API_POSITION = {
    "FunctionLeadRelation": 1,  # "A was not followed by B": B is missing
    "FunctionCoverRelation": 0,  # "B was called without A before it": A is missing
}


@dataclass(frozen=True)
class ViolatedInvariant:
    """What grouping needs of one violated invariant: its first violation and totals."""

    first: Violation
    count: int
    last_step: int
    ranks: frozenset[int]


@dataclass
class Finding:
    """Violated invariants that share one cause, with a headline a person can act on."""

    subject: str
    kind: str
    """``missing_call`` (an API the run never made), ``call`` (calls in the wrong
    place or with other arguments) or ``state`` (a variable's state)."""
    members: list[ViolatedInvariant] = field(default_factory=list)
    headline: str = ""

    @property
    def first(self) -> Violation:
        return min((m.first for m in self.members), key=lambda v: v.root_cause_key())

    @property
    def first_step(self) -> int:
        return min(m.first.step for m in self.members)

    @property
    def last_step(self) -> int:
        return max(m.last_step for m in self.members)

    @property
    def ranks(self) -> list[int]:
        return sorted(set().union(*(m.ranks for m in self.members)))

    @property
    def violations(self) -> int:
        return sum(m.count for m in self.members)

    def invariant_ids(self) -> list[str]:
        ordered = sorted(self.members, key=lambda m: m.first.root_cause_key())
        return [m.first.invariant_id for m in ordered]

    def to_record(self, rank: int, steps_by_rank: dict[str, list[int]]) -> FindingSummary:
        first = self.first
        return FindingSummary(
            rank=rank,
            headline=self.headline,
            subject=self.subject,
            kind=self.kind,
            invariant_ids=self.invariant_ids(),
            invariants=len(self.members),
            violations=self.violations,
            first_step=self.first_step,
            last_step=self.last_step,
            ranks=self.ranks,
            relations=sorted({m.first.relation for m in self.members}),
            sources=sources_of(m.first for m in self.members),
            expected=first.expected,
            observed=first.observed,
            steps_by_rank=steps_by_rank,
        )


def group_findings(
    violated: Sequence[ViolatedInvariant], api_calls: Mapping[str, int] | None = None
) -> list[Finding]:
    """The findings of a run, most likely root cause first.

    ``api_calls`` counts the calls of each API in the checked run; with it, an API
    that was never called is named as such ("is never called").
    """
    calls = api_calls if api_calls is not None else {}
    findings = _cover(list(violated), calls)
    findings = _fold_consequences(findings)
    findings.sort(key=lambda f: f.first.root_cause_key())
    for finding in findings:
        finding.headline = headline_of(finding, calls)
    return findings


def _cover(violated: list[ViolatedInvariant], calls: Mapping[str, int]) -> list[Finding]:
    mentions = [subjects_of(v.first, calls) for v in violated]
    remaining = set(range(len(violated)))
    findings: list[Finding] = []
    while remaining:
        scores: dict[str, int] = {}
        for index in remaining:
            for subject, weight in mentions[index].items():
                scores[subject] = scores.get(subject, 0) + weight
        if not scores:  # a violation that names nothing: a finding of its own each
            for index in sorted(remaining):
                findings.append(_finding(violated[index].first.relation, [violated[index]]))
            break
        best = max(scores, key=lambda s: (scores[s], _never_called(s, calls), s))
        members = sorted(i for i in remaining if best in mentions[i])
        findings.append(_finding(best, [violated[i] for i in members], calls))
        remaining.difference_update(members)
    return findings


def _finding(
    subject: str, members: list[ViolatedInvariant], calls: Mapping[str, int] | None = None
) -> Finding:
    if subject.startswith(_VAR_PREFIX):
        kind = "state"
    elif calls is not None and _never_called(subject, calls):
        kind = "missing_call"
    else:
        kind = "call"
    return Finding(subject=subject.removeprefix(_VAR_PREFIX), kind=kind, members=members)


def _fold_consequences(findings: list[Finding]) -> list[Finding]:
    """Fold every finding that is the consequence of an earlier one into it."""
    ordered = sorted(findings, key=lambda f: f.first.root_cause_key())
    kept: list[Finding] = []
    for finding in ordered:
        cause = next((c for c in kept if _is_consequence(finding, of=c)), None)
        if cause is None:
            kept.append(finding)
            continue
        cause.members += finding.members
        if cause.kind == finding.kind == "state":
            cause.subject = common_prefix([cause.subject, finding.subject]) or cause.subject
    return _merge_same_state(kept)


def _is_consequence(finding: Finding, *, of: Finding) -> bool:
    """On ``of``'s ranks, and either only symptoms (a computed value out of range, see
    ``Violation.symptom``) starting no earlier than ``of``, or starting within the
    window after ``of`` and downstream of a wrong call sequence or about something
    ``of`` also speaks of."""
    cause = of
    if not set(cause.ranks) & set(finding.ranks):
        return False
    if all(m.first.symptom for m in finding.members):
        # A loss or gradient norm out of range is downstream of any earlier bug, however
        # many steps it took to drift (gradients accumulating since a lost zero_grad).
        return finding.first_step >= cause.first_step
    if not 0 <= finding.first_step - cause.first_step <= CONSEQUENCE_WINDOW_STEPS:
        return False
    return cause.kind != "state" or bool(_mentions(cause) & _mentions(finding))


def _mentions(finding: Finding) -> set[str]:
    return {s for m in finding.members for s in subjects_of(m.first)}


def _merge_same_state(findings: list[Finding]) -> list[Finding]:
    """State findings of one model that start together with the same relations are one
    finding ("fc1 and fc2 are never updated"), not one per layer."""
    merged: dict[tuple[object, ...], Finding] = {}
    out: list[Finding] = []
    for finding in findings:
        if finding.kind != "state":
            out.append(finding)
            continue
        key = (
            finding.subject.split(".")[0],
            finding.first_step,
            tuple(finding.ranks),
            frozenset(m.first.relation for m in finding.members),
        )
        same = merged.get(key)
        if same is None:
            merged[key] = finding
            out.append(finding)
        else:
            same.subject = common_prefix([same.subject, finding.subject]) or same.subject
            same.members += finding.members
    return out


_VAR_PREFIX = "var:"


def subjects_of(v: Violation, calls: Mapping[str, int] | None = None) -> dict[str, int]:
    """The subjects a violation mentions, with the weight of each (blamed ones more)."""
    subjects: dict[str, int] = {}
    blamed_api = blamed_api_of(v, calls)
    if v.variables:
        owner = common_prefix([module_path(name) for name in v.variables])
        if owner:
            subjects[_VAR_PREFIX + owner] = BLAMED_WEIGHT
    for api in v.apis:
        weight = BLAMED_WEIGHT if api == blamed_api and not v.variables else 1
        subjects[api] = max(subjects.get(api, 0), weight)
    return subjects


def blamed_api_of(v: Violation, calls: Mapping[str, int] | None = None) -> str | None:
    """The API an ordering relation found missing; otherwise the API it is about.

    "A was not followed by B" blames B, unless the run did call B: then A ran
    where the healthy runs did not (an extra or misplaced A), and A is blamed.
    """
    if not v.apis:
        return None
    position = _BLAMED_API_POSITION.get(v.relation)
    if position is not None and len(v.apis) == 2:
        missing, other = v.apis[position], v.apis[1 - position]
        return other if calls and calls.get(missing, 0) > 0 else missing
    return v.apis[-1] if v.relation == "APIContainRelation" and not v.variables else v.apis[0]


def module_path(variable: str) -> str:
    """``MLP.fc1.weight`` -> ``MLP.fc1``: a parameter is owned by its module."""
    head, _, _ = variable.rpartition(".")
    return head or variable


def common_prefix(names: Iterable[str]) -> str:
    """The longest dotted prefix shared by every name (``""`` when none)."""
    split = [name.split(".") for name in names]
    if not split:
        return ""
    prefix: list[str] = []
    for parts in zip(*split, strict=False):
        if any(part != parts[0] for part in parts):
            break
        prefix.append(parts[0])
    return ".".join(prefix)


def _never_called(subject: str, calls: Mapping[str, int]) -> bool:
    return not subject.startswith(_VAR_PREFIX) and bool(calls) and calls.get(subject, 0) == 0


def short_api(api: str) -> str:
    """``torch.optim.lr_scheduler.LRScheduler.step`` -> ``LRScheduler.step``."""
    parts = api.split(".")
    return ".".join(parts[-2:]) if len(parts) > 2 else api


def headline_of(finding: Finding, calls: Mapping[str, int]) -> str:
    """One plain sentence: what is wrong, about what, since when."""
    first = finding.first
    since = f"from step {finding.first_step}"
    ranks = finding.ranks
    where = f" on rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"
    where = where if len(ranks) > 1 or ranks != [0] else ""
    if finding.kind == "missing_call":
        context = _missing_call_context(finding)
        return f"`{short_api(finding.subject)}` is never called{where}; {context}"
    what = shorten_api_names(first.what)
    if finding.kind == "state":
        return f"`{finding.subject}` is not as in the healthy runs: {what} ({since}{where})"
    return (
        f"`{short_api(finding.subject)}` does not run as in the healthy runs: "
        f"{what} ({since}{where})"
    )


_QUALIFIED_API = re.compile(r"\btorch(?:\.[A-Za-z_]\w*)+")


def shorten_api_names(text: str) -> str:
    """``torch.optim.Optimizer.step`` -> ``Optimizer.step`` inside a sentence."""
    return _QUALIFIED_API.sub(lambda m: short_api(m.group(0)), text)


def _missing_call_context(finding: Finding) -> str:
    """Where the healthy runs called the missing API, from its ordering invariants.

    "A is called before every B" (FunctionCover) places A once per B, the most
    telling context; an optimizer step, being what a step is, is named first.
    "A is followed by B" (FunctionLead) is the fallback.
    """
    before: set[str] = set()
    after: set[str] = set()
    for member in finding.members:
        v = member.first
        if v.relation == "FunctionCoverRelation" and len(v.apis) == 2:
            before.add(v.apis[1])
        elif v.relation == "FunctionLeadRelation" and len(v.apis) == 2:
            after.add(v.apis[0])
    if before:
        return f"in the healthy runs it ran before every {_cadence(before)}"
    if after:
        return f"in the healthy runs it ran after every {_cadence(after)}"
    return f"the healthy runs called it ({len(finding.members)} invariants say so)"


def _cadence(apis: set[str]) -> str:
    ordered = sorted(apis, key=lambda api: (api != OPTIMIZER_STEP, api))
    more = len(ordered) - 1
    return f"`{short_api(ordered[0])}`" + (
        f" (and {more} other call{'s' * (more > 1)})" if more else ""
    )


def sources_of(violations: Iterable[Violation]) -> list[str]:
    """The user's source lines of the offending calls, first seen first, without repeats."""
    seen: list[str] = []
    for v in violations:
        line = source_line(v)
        if line and line not in seen:
            seen.append(line)
    return seen
