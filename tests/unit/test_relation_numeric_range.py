"""NumericRangeRelation: magnitudes, group ratios and lr trajectories learned from healthy runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tracegen import BACKWARD, CLIP, STEP, LoopSpec, stored_events

from traincheck.analysis.checker import Checker
from traincheck.analysis.infer_engine import infer_from_streams
from traincheck.analysis.instrumentation import instrumentation_for
from traincheck.analysis.invariants import InvariantSet
from traincheck.analysis.invariants_file import dump_invariants, load_invariants
from traincheck.analysis.relations.known import select_relations
from traincheck.analysis.relations.numeric_range import (
    HIGH,
    LOW,
    MIN_SERIES_VALUES,
    Bounds,
    learn_bounds,
    learn_start_bound,
)
from traincheck.analysis.violations import Violation
from traincheck.errors import InvariantsFileError

RELATION = "NumericRangeRelation"
HEALTHY = {"loss_scale": 1.0, "group_lrs": (0.1, 0.1)}
LOSS_RANGE = f"{BACKWARD}: loss stays at most"
GROUP_RATIO = f"{STEP}: lr[1] / lr stays within"
LR_CHANGES = f"{STEP}: lr differs from its value at the optimizer's previous step"


def _infer(**spec: object) -> InvariantSet:
    settings = {**HEALTHY, **spec}
    runs = [stored_events(LoopSpec(seed=seed, pid=100 + seed, **settings)) for seed in (1, 2)]  # type: ignore[arg-type]
    return infer_from_streams(runs, select_relations([RELATION])).invariant_set


def _infer_from_one_run(**spec: object) -> InvariantSet:
    run = stored_events(LoopSpec(seed=1, pid=101, **{**HEALTHY, **spec}))  # type: ignore[arg-type]
    return infer_from_streams([run], select_relations([RELATION])).invariant_set


def _check(invariants: InvariantSet, **spec: object) -> list[Violation]:
    checker = Checker(invariants)
    run = LoopSpec(seed=3, pid=303, **{**HEALTHY, **spec})  # type: ignore[arg-type]
    return [v for e in stored_events(run) for v in checker.feed(e)] + checker.finish()


def _texts(invariants: InvariantSet) -> list[str]:
    return [inv.text_description for inv in invariants]


def _with(texts: list[str], prefix: str) -> list[str]:
    return [t for t in texts if t.startswith(prefix)]


def test_learns_an_upper_bound_on_a_falling_loss_and_the_lr_shape() -> None:
    texts = _texts(_infer())
    assert len(_with(texts, LOSS_RANGE)) == 1, texts
    assert not _with(texts, f"{BACKWARD}: loss stays within"), "a falling loss has no floor"
    assert _with(texts, GROUP_RATIO) == [f"{GROUP_RATIO} [1, 1]"]
    assert LR_CHANGES in texts
    assert not _with(texts, f"{STEP}: lr stays"), "the lr itself is configuration"


def test_healthy_run_with_another_lr_raises_nothing() -> None:
    invariants = _infer()
    assert len(invariants) >= 4
    assert _check(invariants, group_lrs=(0.2, 0.2), steps=30) == []
    assert _check(invariants, group_lrs=(0.05, 0.05)) == []


def test_loss_not_divided_by_the_accumulation_steps_is_caught_at_step_0() -> None:
    violations = _check(_infer(), loss_scale=4.0)
    loss = [v for v in violations if v.text_description.startswith(LOSS_RANGE)]
    assert loss and loss[0].step == 0
    assert loss[0].apis == (BACKWARD,)
    assert "loss = " in loss[0].observed


def test_a_loss_is_bounded_at_the_first_step_only() -> None:
    """With one healthy run there is no spread across runs to widen a bound by: a
    healthy variant whose loss climbs for a while (a smaller batch, a larger lr)
    would cross any bound on the whole series. The loss before the first update
    depends on neither; a missing division still shows there."""
    invariants = _infer_from_one_run()
    texts = _with(_texts(invariants), LOSS_RANGE)
    assert len(texts) == 1 and texts[0].endswith("at the first optimizer step"), texts
    assert _check(invariants, loss_growth=1.3) == []
    violations = _check(invariants, loss_scale=4.0)
    assert violations and {v.step for v in violations} == {0}
    assert all(v.text_description.startswith(LOSS_RANGE) for v in violations)


def test_lr_schedule_applied_to_the_first_group_only_is_caught_at_step_1() -> None:
    violations = _check(_infer(), scheduled_groups=1)
    ratio = [v for v in violations if v.text_description.startswith(GROUP_RATIO)]
    assert ratio and ratio[0].step == 1, "at step 0 the schedule has not moved yet"
    changed = [v for v in violations if v.text_description.startswith(f"{STEP}: lr[1] differs")]
    assert changed and changed[0].step == 1


def test_a_schedule_that_is_never_stepped_is_caught() -> None:
    violations = _check(_infer(), scheduled_groups=0)
    assert any(v.text_description == LR_CHANGES and v.step == 1 for v in violations)


def test_an_lr_never_seen_changing_is_not_claimed_constant() -> None:
    """A StepLR whose first step falls after the healthy runs ended looks constant."""
    invariants = _infer(scheduled_groups=0)
    texts = _texts(invariants)
    assert not [t for t in texts if "previous step" in t], texts
    assert _with(texts, GROUP_RATIO), "the ratio still holds"
    assert _check(invariants, scheduled_groups=None) == []


COUNTS = f"{STEP}: state_step is one more than its value at the optimizer's previous step"


def test_an_optimizer_recreated_without_its_state_is_caught_where_its_count_restarts() -> None:
    """Adam counts its steps in its state; a resume that rebuilds the optimizer and
    forgets ``load_state_dict`` restarts the count while training goes on."""
    invariants = _infer_from_one_run(state_steps=True)
    assert COUNTS in _texts(invariants)
    assert _check(invariants, state_steps=True, steps=30) == []
    violations = _check(invariants, state_steps=True, optimizer_restarted_at=5)
    assert [v.step for v in violations] == [5], violations
    assert violations[0].observed == "state_step = 0, went from 4 to 0"


def test_a_gradient_norm_is_judged_against_its_first_value_in_the_run() -> None:
    """Halving the batch raises a noise-dominated norm by sqrt(2): no alarm; a norm
    that jumps tenfold mid-run is caught where it jumps."""
    invariants = _infer(grad_norm=2.0)
    relative = f"{CLIP}: the returned result / its first value in the run stays at most"
    assert _with(_texts(invariants), relative), _texts(invariants)
    assert _check(invariants, grad_norm=2.8) == []
    jumped = _check(invariants, grad_norm=2.0, grad_norm_jump_at=5)
    assert jumped and {v.step for v in jumped} == set(range(5, 20))
    assert all(v.text_description.startswith(relative) for v in jumped)


def test_runs_without_scalars_yield_nothing() -> None:
    runs = [stored_events(LoopSpec(seed=seed, pid=seed)) for seed in (1, 2)]
    assert len(infer_from_streams(runs, select_relations([RELATION])).invariant_set) == 0


def test_invariants_round_trip_through_the_file(tmp_path: Path) -> None:
    invariants = _infer()
    path = tmp_path / "inv.json"
    dump_invariants(invariants, path)
    assert load_invariants(path).invariants == invariants.invariants
    data = json.loads(path.read_text())
    ranged = next(i for i in data["invariants"] if "hints" in i)
    assert isinstance(ranged["hints"][HIGH], float)
    ranged["hints"][HIGH] = "Infinity"
    path.write_text(json.dumps(data))
    with pytest.raises(InvariantsFileError, match="hints"):
        load_invariants(path)


# -- the bounds themselves ----------------------------------------------------------------


def test_margin_grows_with_the_spread_across_runs_and_the_noise() -> None:
    steady = [0.0, 0.01, 0.0, 0.01, 0.0, 0.01, 0.0]
    tight = learn_bounds([steady, steady])
    assert isinstance(tight, Bounds) and tight.high is not None and tight.low is not None
    apart = learn_bounds([steady, [v + 0.5 for v in steady]])
    assert isinstance(apart, Bounds) and apart.high is not None and apart.low is not None
    assert apart.high - apart.low > (tight.high - tight.low) + 0.5
    noisy = [0.0, 0.3, 0.0, 0.3, 0.0, 0.3, 0.0]
    loose = learn_bounds([noisy, noisy])
    assert isinstance(loose, Bounds) and loose.high is not None and tight.high is not None
    assert loose.high - 0.3 > tight.high - 0.01


def test_a_side_the_series_drifts_towards_stays_open() -> None:
    falling = [math.log(2.3 * 0.9**k) for k in range(12)]
    bounds = learn_bounds([falling])
    assert isinstance(bounds, Bounds) and bounds.low is None and bounds.high is not None
    rising = [-v for v in falling]
    bounds = learn_bounds([rising])
    assert isinstance(bounds, Bounds) and bounds.high is None and bounds.low is not None


def test_no_range_without_enough_positive_finite_values() -> None:
    assert isinstance(learn_bounds([[0.0] * (MIN_SERIES_VALUES - 1)]), str)
    assert isinstance(learn_bounds([[0.0] * MIN_SERIES_VALUES + [-math.inf]]), str)


def test_the_first_step_bound_widens_with_the_spread_of_starts_and_the_noise() -> None:
    flat = [0.0, 0.01, 0.0, 0.01, 0.0, 0.01, 0.0]
    one = learn_start_bound([flat], [[0.0]])
    assert isinstance(one, Bounds) and one.low is None and one.high is not None
    two = learn_start_bound([flat, flat], [[0.0], [0.2]])
    assert isinstance(two, Bounds) and two.high is not None
    assert two.high >= one.high + 0.4, "the highest start plus the spread of starts"
    noisy = [0.0, 0.3, 0.0, 0.3, 0.0, 0.3, 0.0]
    loose = learn_start_bound([noisy], [[0.0]])
    assert isinstance(loose, Bounds) and loose.high is not None and loose.high > one.high + 0.8
    assert isinstance(learn_start_bound([flat], [[]]), str), "no value at the first step"
    assert isinstance(learn_start_bound([flat[:3]], [[0.0]]), str), "too few values for a noise"


def test_a_magnitude_never_gets_a_floor() -> None:
    flat = [0.0, 0.01, 0.0, 0.01, 0.0, 0.01, 0.0]
    bounds = learn_bounds([flat], floor=False)
    assert isinstance(bounds, Bounds) and bounds.low is None and bounds.high is not None


def test_nan_is_outside_every_range() -> None:
    assert not Bounds(None, 1.0).contains(math.nan)
    assert not Bounds(-1.0, None).contains(-math.inf)
    assert Bounds(None, 1.0).contains(-math.inf)
    assert {LOW, HIGH} == {name for name, _ in Bounds(-1.0, 1.0).hints()}


def test_instrumentation_names_what_the_invariants_read() -> None:
    section = instrumentation_for(_infer())
    assert {BACKWARD, STEP} <= set(section["apis"])
    assert {"loss", "lr", "lr[1]"} <= set(section["args"]), "a group ratio reads group 0's lr"
    assert section["state_points"] == [], "no variable state is needed"
