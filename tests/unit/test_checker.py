"""The checker: healthy runs pass, seeded bugs are named at their first step, live == offline."""

from __future__ import annotations

import pytest
from tracegen import BACKWARD, STEP, ZERO_GRAD, LoopSpec, stored_events

from traincheck.analysis.alerts import format_alert
from traincheck.analysis.checker import Checker
from traincheck.analysis.infer_engine import infer_from_streams


@pytest.fixture(scope="module")
def invariants():
    runs = [LoopSpec(steps=20, seed=1), LoopSpec(steps=12, seed=2, pid=5151)]
    return infer_from_streams([stored_events(s) for s in runs]).invariant_set


def _check(invariant_set, events):
    checker = Checker(invariant_set)
    violations = [v for e in events for v in checker.feed(e)]
    return violations + checker.finish(), checker


def test_healthy_run_of_another_length_and_seed_passes(invariants) -> None:
    violations, checker = _check(invariants, stored_events(LoopSpec(steps=50, seed=77, pid=9)))
    assert violations == []
    results = checker.results()
    assert all(r.triggered > 0 for r in results)
    assert sum(r.passed for r in results) > 0


def test_removed_zero_grad_is_named_at_step_zero(invariants) -> None:
    violations, _ = _check(invariants, stored_events(LoopSpec(steps=10, seed=3, zero_grad=False)))
    assert violations
    first = min(violations, key=lambda v: v.step)
    assert first.step == 0
    cover = [v for v in violations if v.relation == "FunctionCoverRelation"]
    step_cover = [v for v in cover if v.apis == (ZERO_GRAD, STEP)]
    assert step_cover[0].step == 0 and len(step_cover) == 10
    alert = format_alert(step_cover[0])
    assert alert.startswith("VIOLATION at step 0 (rank 0): ")
    assert "zero_grad" in alert.splitlines()[0]
    # Accumulated gradients are visible in backward's grad states from step 1 on.
    grads = [v for v in violations if v.relation == "APIContainRelation" and v.apis == (BACKWARD,)]
    assert grads[0].step == 1 and "non_zero -> non_zero" in grads[0].observed


def test_stale_optimizer_step_changes_no_parameter(invariants) -> None:
    violations, _ = _check(
        invariants, stored_events(LoopSpec(steps=10, seed=4, stale_optimizer=True))
    )
    data = [v for v in violations if v.apis == (STEP,) and "data" in v.text_description]
    assert data and data[0].step == 0
    headline = format_alert(data[0]).splitlines()[0]
    assert headline == (
        f"VIOLATION at step 0 (rank 0): {STEP} does not change the parameters "
        "(no torch.nn.Parameter.data changed)"
    )
    assert data[0].variables == tuple(sorted(f"optimizer[0].param[{i}]" for i in range(4)))
    zero = [v for v in violations if v.apis == (ZERO_GRAD,)]
    assert zero[0].step == 1  # step 0 is excluded by the precondition


def test_alert_has_evidence_lines(invariants) -> None:
    violations, _ = _check(invariants, stored_events(LoopSpec(steps=3, stale_optimizer=True)))
    lines = format_alert(violations[0]).splitlines()
    assert all(line.startswith("    ") for line in lines[1:])
    text = "\n".join(lines)
    assert "expected:" in text and "observed:" in text and violations[0].invariant_id in text
    assert "healthy runs" in text


def test_occurrences_are_numbered(invariants) -> None:
    violations, checker = _check(invariants, stored_events(LoopSpec(steps=6, zero_grad=False)))
    by_inv: dict[str, list[int]] = {}
    for v in violations:
        by_inv.setdefault(v.invariant_id, []).append(v.occurrence)
    assert max(len(occ) for occ in by_inv.values()) > 1  # some invariant is violated again
    assert all(occ == list(range(1, len(occ) + 1)) for occ in by_inv.values())
    result = next(r for r in checker.results() if r.invariant.id == violations[0].invariant_id)
    assert result.violated == len(by_inv[violations[0].invariant_id])


def test_lead_window_left_open_by_the_end_of_the_run_is_censored(invariants) -> None:
    """A run may stop anywhere: an A whose B never came because the stream ended is
    neither a violation nor a pass (healthy runs stopped at other points must not alarm)."""
    events = stored_events(LoopSpec(steps=5, seed=8))
    # Cut the stream right after the last zero_grad returned: its step never came.
    last_zero_ret = max(
        i for i, e in enumerate(events) if getattr(e.event, "api", None) == ZERO_GRAD
    )
    checker = Checker(invariants)
    live = [v for e in events[: last_zero_ret + 1] for v in checker.feed(e)]
    assert live == []
    assert checker.finish() == []
    leads = [r for r in checker.results() if r.invariant.relation == "FunctionLeadRelation"]
    assert leads and all(r.violated == 0 for r in leads)


def test_live_feed_equals_offline_replay_with_interleaved_ranks(invariants, tmp_path) -> None:
    from tracegen import write_trace

    from traincheck.sidecar.store import read_trace

    specs = [
        LoopSpec(steps=9, seed=1, pid=10, rank=0),
        LoopSpec(steps=9, seed=2, pid=11, rank=1, zero_grad=False),
        LoopSpec(steps=9, seed=3, pid=12, rank=2, stale_optimizer=True),
    ]
    live_events = stored_events(specs, batch_size=5)
    live, _ = _check(invariants, live_events)
    offline, _ = _check(invariants, read_trace(write_trace(tmp_path / "t", specs, 5)).events())
    assert [v.to_json() for v in live] == [v.to_json() for v in offline]
    assert {v.rank for v in live} == {1, 2}


def test_empty_invariant_set_checks_nothing() -> None:
    from traincheck.analysis.invariants import InvariantSet

    violations, checker = _check(InvariantSet(), stored_events(LoopSpec(steps=3)))
    assert violations == [] and checker.results() == []


def test_a_checker_that_joins_mid_step_judges_from_the_next_step_on(invariants) -> None:
    """traincheck-attach joins inside a step: the zero_grad of that step happened
    before it joined. Judged as a whole, the step would raise a false alarm."""
    events = list(stored_events(LoopSpec(steps=6, seed=2)))
    step_2_zero_grad = next(
        i
        for i, e in enumerate(events)
        if getattr(e.event, "api", None) == ZERO_GRAD and e.event.step == 2
    )
    mid_step = events[step_2_zero_grad + 1 :]  # joins right after step 2's zero_grad
    violations, _ = _check(invariants, mid_step)
    assert violations, "without censoring, the partial step is (wrongly) judged"
    joined = Checker(invariants, joined_mid_run=True)
    assert [v for e in mid_step for v in joined.feed(e)] + joined.finish() == []
    assert joined.api_calls[STEP] == 4  # steps 2..5: counted although step 2 is censored
