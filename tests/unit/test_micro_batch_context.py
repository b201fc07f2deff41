"""Invariants learned without gradient accumulation judge a run with it on the first
micro-batch of each step only, and the ordering windows span whole steps.

Before, a healthy Trainer job with ``--grad-accum 4`` checked against invariants from
runs without accumulation raised 663 alerts: the second backward of a step finds
gradients already there, and the calls of each micro-batch closed the ordering
windows of the first.
"""

from __future__ import annotations

from tracegen import BACKWARD, FORWARD, LoopSpec, stored_events

from traincheck.analysis.checker import Checker
from traincheck.analysis.infer_engine import infer_from_streams
from traincheck.analysis.invariants import InvariantSet
from traincheck.analysis.preconditions import FIRST_MICRO_BATCH
from traincheck.analysis.violations import Violation


def _infer(*specs: LoopSpec) -> InvariantSet:
    return infer_from_streams([stored_events(spec) for spec in specs]).invariant_set


def _check(invariants: InvariantSet, spec: LoopSpec) -> list[Violation]:
    checker = Checker(invariants)
    return [v for e in stored_events(spec) for v in checker.feed(e)] + checker.finish()


def _texts(invariants: InvariantSet) -> dict[str, object]:
    return {inv.text_description: inv for inv in invariants}


def test_invariants_from_plain_runs_are_confined_to_first_micro_batches() -> None:
    invariants = _infer(LoopSpec(seed=1), LoopSpec(seed=2))
    none_before_backward = _texts(invariants)[
        f"before every {BACKWARD}, every torch.nn.Parameter has grad == None"
    ]
    assert none_before_backward.precondition is not None  # type: ignore[attr-defined]
    assert FIRST_MICRO_BATCH in none_before_backward.precondition.context  # type: ignore[attr-defined]


def test_a_healthy_run_with_accumulation_raises_nothing() -> None:
    invariants = _infer(LoopSpec(seed=1), LoopSpec(seed=2))
    assert _check(invariants, LoopSpec(seed=3, accumulate=4)) == []


def test_two_and_four_micro_batches_agree() -> None:
    """Windows span one optimizer step whatever the number of micro-batches."""
    invariants = _infer(LoopSpec(seed=1, accumulate=2), LoopSpec(seed=2, accumulate=2))
    assert _check(invariants, LoopSpec(seed=3, accumulate=4)) == []


def test_bugs_are_still_caught_under_accumulation() -> None:
    """The first micro-batch is still judged: a dropped zero_grad leaves gradients
    before the step's first backward."""
    invariants = _infer(LoopSpec(seed=1), LoopSpec(seed=2))
    violations = _check(invariants, LoopSpec(seed=3, accumulate=4, zero_grad=False))
    assert violations and violations[0].step <= 1
    forward_lead = f"every {FORWARD} is followed by {BACKWARD} before the next {FORWARD}"
    assert forward_lead in _texts(invariants)
