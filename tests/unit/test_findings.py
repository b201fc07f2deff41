"""Findings: violated invariants grouped by the cause they share, live and in the summary."""

from __future__ import annotations

from dataclasses import replace

from traincheck.analysis.alert_sink import FindingSink
from traincheck.analysis.findings import ViolatedInvariant, group_findings
from traincheck.analysis.results import ViolationLedger, summarize
from traincheck.analysis.violations import Violation

STEP = "torch.optim.Optimizer.step"
ZERO_GRAD = "torch.optim.Optimizer.zero_grad"
BACKWARD = "torch.Tensor.backward"
FORWARD = "torch.nn.Module.__call__"
SCHEDULER = "torch.optim.lr_scheduler.LRScheduler.step"

BASE = Violation(
    invariant_id="",
    relation="FunctionLeadRelation",
    text_description="",
    step=0,
    stage="train",
    pid=1,
    rank=0,
    thread=1,
    apis=(),
    variables=(),
    what="",
    expected="",
    observed="",
)


def lead(inv: str, a: str, b: str, step: int = 0, seq: int = 0, **changes) -> Violation:
    """'a was not followed by b' (FunctionLead): b is what is missing."""
    return replace(
        BASE,
        invariant_id=inv,
        apis=(a, b),
        step=step,
        seq=seq,
        what=f"{a} was not followed by {b}",
        **changes,
    )


def cover(inv: str, a: str, b: str, step: int = 0, seq: int = 0) -> Violation:
    """'b was called without a before it' (FunctionCover): a is what is missing."""
    return replace(
        BASE,
        invariant_id=inv,
        relation="FunctionCoverRelation",
        apis=(a, b),
        step=step,
        seq=seq,
        what=f"{b} was called without a {a} call before it",
    )


def state(inv: str, variables: tuple[str, ...], step: int, seq: int = 0, **changes) -> Violation:
    return replace(
        BASE,
        invariant_id=inv,
        relation=changes.pop("relation", "VarPeriodicChangeRelation"),
        apis=(STEP,),
        variables=variables,
        step=step,
        seq=seq,
        what=f"{', '.join(variables)} did not change",
        **changes,
    )


def violated(*violations: Violation, count: int = 3) -> list[ViolatedInvariant]:
    return [ViolatedInvariant(v, count, v.step + count, frozenset({v.rank})) for v in violations]


def test_a_dropped_scheduler_call_is_one_finding_that_says_it_is_never_called() -> None:
    """Every 'X was not followed by LRScheduler.step' says one thing."""
    items = violated(
        *(lead(f"i{n}", api, SCHEDULER, seq=n) for n, api in enumerate([STEP, BACKWARD, FORWARD]))
    )
    findings = group_findings(items, {STEP: 12, BACKWARD: 12, FORWARD: 12})
    assert len(findings) == 1
    (finding,) = findings
    assert finding.subject == SCHEDULER and finding.kind == "missing_call"
    assert finding.headline.startswith("`LRScheduler.step` is never called")
    assert "after every `Optimizer.step`" in finding.headline
    assert finding.invariant_ids() == ["i0", "i1", "i2"]


def test_an_api_that_was_called_is_not_said_to_be_missing() -> None:
    items = violated(lead("i0", STEP, SCHEDULER), lead("i1", BACKWARD, SCHEDULER, seq=1))
    (finding,) = group_findings(items, {SCHEDULER: 4, STEP: 12, BACKWARD: 12})
    assert finding.kind == "call" and "never called" not in finding.headline


def test_state_going_wrong_a_step_after_a_missing_call_is_folded_into_it() -> None:
    """zero_grad dropped: the ordering invariants break at step 0, the gradients'
    state invariants at step 1 -- one bug, one finding, the missing call first."""
    grads = ("MLP.fc1.weight", "MLP.fc1.bias", "MLP.fc2.weight")
    items = violated(
        cover("c1", ZERO_GRAD, STEP, step=0, seq=1),
        cover("c2", ZERO_GRAD, BACKWARD, step=0, seq=2),
        state("s1", grads, step=1, seq=3, relation="StateAtCallRelation"),
    )
    findings = group_findings(items, {STEP: 12, BACKWARD: 12})
    assert len(findings) == 1
    assert findings[0].subject == ZERO_GRAD
    assert findings[0].headline.startswith("`Optimizer.zero_grad` is never called")
    assert "before every `Optimizer.step`" in findings[0].headline
    assert set(findings[0].invariant_ids()) == {"c1", "c2", "s1"}


def test_unrelated_problems_far_apart_stay_two_findings_root_cause_first() -> None:
    items = violated(
        state("late", ("MLP.fc2.weight",), step=7, seq=1),
        cover("early", ZERO_GRAD, STEP, step=0, seq=2),
    )
    findings = group_findings(items, {STEP: 12})
    assert [f.invariant_ids() for f in findings] == [["early"], ["late"]]
    assert findings[1].kind == "state" and findings[1].subject == "MLP.fc2"
    assert "from step 7" in findings[1].headline


def test_layers_that_break_the_same_way_together_are_one_finding() -> None:
    items = violated(
        state("w1", ("MLP.fc1.weight",), step=2, seq=1),
        state("w2", ("MLP.fc2.weight",), step=2, seq=2),
    )
    (finding,) = group_findings(items, {})
    assert finding.subject == "MLP" and finding.kind == "state"


def test_different_ranks_are_not_folded_together() -> None:
    items = violated(
        cover("r0", ZERO_GRAD, STEP, step=0, seq=1),
        state("r1", ("Net.fc.weight",), step=0, seq=2, rank=1),
    )
    assert len(group_findings(items, {STEP: 3})) == 2


def test_summary_lists_findings_with_their_invariant_ids() -> None:
    ledger = ViolationLedger()
    for step in range(3):
        for n, api in enumerate([STEP, BACKWARD]):
            ledger.add(lead(f"i{n}", api, SCHEDULER, step=step, seq=10 * step + n))
    summary = summarize([], ledger, {STEP: 3, BACKWARD: 3})
    assert len(summary.findings) == 1
    finding = summary.findings[0]
    assert finding.rank == 1 and finding.kind == "missing_call"
    assert finding.invariant_ids == ["i0", "i1"]
    assert finding.violations == 6 and (finding.first_step, finding.last_step) == (0, 2)
    assert set(finding.invariant_ids) == {v.invariant_id for v in summary.violations}


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_live_findings_print_one_block_then_one_line_as_it_grows_never_a_wall() -> None:
    clock = Clock()
    writes: list[str] = []
    sink = FindingSink(writes.append, api_calls=lambda: {STEP: 10, BACKWARD: 10}, clock=clock)
    sink.add(lead("i0", STEP, SCHEDULER, step=0, seq=1))
    sink.add(lead("i1", BACKWARD, SCHEDULER, step=0, seq=2))
    sink.pump(current_step=1)
    assert len(writes) == 1
    block = writes[0]
    assert block.startswith("FINDING at step 0: `LRScheduler.step` is never called")
    assert block.count("FINDING") == 1 and "supported by 1 more violated invariant" in block
    for step in range(1, 6):  # the same two invariants, every step: no new block
        sink.add(lead("i0", STEP, SCHEDULER, step=step, seq=10 * step))
        sink.add(lead("i1", BACKWARD, SCHEDULER, step=step, seq=10 * step + 1))
        clock.now += 2
        sink.pump(current_step=step + 1)
    assert "".join(writes).count("FINDING") == 1
    updates = [w for w in writes[1:] if "finding `" in w]
    assert 1 <= len(updates) <= 3  # doubling: 2 -> 4 -> 8 violations, not one per step
    sink.add(cover("z", ZERO_GRAD, STEP, step=9, seq=99))
    clock.now += 2
    sink.pump(current_step=10)
    assert "".join(writes).count("FINDING") == 2


def test_text_from_files_is_printed_with_its_control_characters_escaped() -> None:
    """An invariant description or a variable name is data: an ANSI/OSC escape in it
    must not reach the terminal, and a newline in it must not fake a line."""
    hostile = "\x1b]0;owned\x07 x\nFINDING at step 0: fake\u202e"
    writes: list[str] = []
    sink = FindingSink(writes.append, api_calls=lambda: {STEP: 3})
    sink.add(replace(state("h", (f"Net.{hostile}.weight",), step=0), what=hostile))
    sink.close()
    text = "".join(writes)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b]0;owned\\x07" in text and "\\u202e" in text
    assert [line for line in text.splitlines() if line.startswith("FINDING")] == [
        text.splitlines()[0]
    ]


def _loss_out_of_range(inv: str, step: int) -> Violation:
    """NumericRange on the loss at backward: a symptom (a value the training computes)."""
    return replace(
        BASE,
        invariant_id=inv,
        relation="NumericRangeRelation",
        apis=(BACKWARD,),
        step=step,
        what="torch.Tensor.backward: loss = 9.1, outside the range of the healthy runs",
        symptom=True,
    )


def test_a_loss_drifting_out_of_range_later_is_folded_into_the_earlier_finding() -> None:
    """A lost zero_grad is seen at step 0; the accumulating gradients push the loss out
    of its range at step 11: one bug, one finding (before, two)."""
    items = violated(cover("z", ZERO_GRAD, STEP, step=0, seq=1), _loss_out_of_range("loss", 11))
    (finding,) = group_findings(items, {STEP: 12, BACKWARD: 12})
    assert sorted(finding.invariant_ids()) == ["loss", "z"]
    assert "`Optimizer.zero_grad` is never called" in finding.headline


def test_a_loss_out_of_range_on_its_own_is_its_own_finding() -> None:
    """The only sign of a bug (a loss not divided by the accumulation steps)."""
    (finding,) = group_findings(violated(_loss_out_of_range("loss", 0)), {BACKWARD: 12})
    assert finding.invariant_ids() == ["loss"]
