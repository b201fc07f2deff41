"""The end-of-run summary: how the live check's invariants fared."""

from __future__ import annotations

from traincheck.records import InvariantOutcomes, OutcomeCounts
from traincheck.run_summary import MAX_NOT_TRIGGERED_LISTED, outcome_lines


def test_no_invariants_no_outcome_lines() -> None:
    assert outcome_lines(None) == []


def test_outcomes_are_counted_and_the_first_never_triggered_named() -> None:
    never = [f"Net.fc{i}.weight.data changes at every step" for i in range(5)]
    lines = outcome_lines(
        InvariantOutcomes(
            invariants_checked=9,
            outcomes=OutcomeCounts(failed=1, passed=3, not_triggered=5, uncheckable=0),
            not_triggered=never,
        )
    )
    assert lines[0] == "9 invariants: 1 failed, 3 passed, 5 not triggered, 0 uncheckable"
    assert [line.strip() for line in lines[2 : 2 + MAX_NOT_TRIGGERED_LISTED]] == never[:3]
    assert lines[-1].strip() == "... and 2 more (live_check/not_triggered.log)"


def test_all_triggered_is_one_line() -> None:
    lines = outcome_lines(
        InvariantOutcomes(invariants_checked=2, outcomes=OutcomeCounts(passed=2), not_triggered=[])
    )
    assert lines == ["2 invariants: 0 failed, 2 passed, 0 not triggered, 0 uncheckable"]
