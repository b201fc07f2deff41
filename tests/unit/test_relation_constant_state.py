"""ConstantStateRelation: a variable attribute no healthy run changed (requires_grad, content)."""

from __future__ import annotations

from typing import Any

from tracegen import MODEL_PARAMS, STEP, ZERO_GRAD, LoopSpec, stored_events

from traincheck.analysis.checker import Checker
from traincheck.analysis.infer_engine import infer_from_streams
from traincheck.analysis.instrumentation import needed_state, tracing_plan, uncheckable_invariants
from traincheck.analysis.invariants import InvariantSet
from traincheck.analysis.invariants_file import dump_invariants, load_invariants
from traincheck.analysis.relations.constant_state import TOO_FEW_RUNS
from traincheck.analysis.relations.known import select_relations
from traincheck.analysis.violations import Violation

RELATION = "ConstantStateRelation"
BACKBONE = MODEL_PARAMS[:2]
HEAD = MODEL_PARAMS[2:]
FROZEN_BACKBONE = {"frozen": BACKBONE, "requires_grad_off": BACKBONE}
"""A backbone frozen on purpose: requires_grad False, still in the optimizer, no gradient."""


def _infer(seeds: tuple[int, ...] = (1, 2), **spec: Any) -> InvariantSet:
    runs = [stored_events(LoopSpec(seed=seed, pid=100 + seed, **spec)) for seed in seeds]
    return infer_from_streams(runs, select_relations([RELATION])).invariant_set


def _check(invariants: InvariantSet, spec: LoopSpec) -> list[Violation]:
    checker = Checker(invariants)
    return [v for e in stored_events(spec) for v in checker.feed(e)] + checker.finish()


def _texts(invariants: InvariantSet) -> set[str]:
    return {inv.text_description for inv in invariants}


def test_learns_frozen_and_trainable_parameters_and_the_frozen_content() -> None:
    texts = _texts(_infer(**FROZEN_BACKBONE))
    for name in BACKBONE:
        assert f"{name}.requires_grad == False at every {ZERO_GRAD}" in texts
        assert f"{name}.data never changes across {STEP} calls" in texts
    for name in HEAD:
        assert f"{name}.requires_grad == True at every {ZERO_GRAD}" in texts
        assert f"{name}.data never changes across {STEP} calls" not in texts, "it trains"
    assert len(texts) == len(BACKBONE) * 2 + len(HEAD), "one invariant per variable attribute"


def test_invariants_hold_in_the_stages_they_were_observed_in() -> None:
    invariant = next(iter(_infer(**FROZEN_BACKBONE)))
    assert invariant.precondition is not None
    assert invariant.precondition.describe() == "stage == 'train'"


def test_a_single_run_is_not_enough_support() -> None:
    outcome = infer_from_streams(
        [stored_events(LoopSpec(seed=1, **FROZEN_BACKBONE))],
        select_relations([RELATION]),
    )
    assert len(outcome.invariant_set) == 0
    assert {r.reason for r in outcome.rejections} == {TOO_FEW_RUNS}


def test_a_backbone_unfrozen_later_in_a_healthy_run_is_no_constant() -> None:
    texts = _texts(_infer(unfreeze_at=10, **FROZEN_BACKBONE))
    assert not any(t.startswith(BACKBONE) for t in texts)


def test_a_healthy_run_and_a_wider_variant_raise_nothing() -> None:
    invariants = _infer(**FROZEN_BACKBONE)
    assert _check(invariants, LoopSpec(seed=3, steps=40, **FROZEN_BACKBONE)) == []
    wider = LoopSpec(seed=4, pid=9, shape=(32, 16), **FROZEN_BACKBONE)
    assert _check(invariants, wider) == []


def test_a_backbone_unfrozen_by_mistake_is_caught_at_its_step() -> None:
    invariants = _infer(**FROZEN_BACKBONE)
    violations = _check(invariants, LoopSpec(seed=3, unfreeze_at=5, **FROZEN_BACKBONE))
    assert violations and min(v.step for v in violations) == 5
    first = [v for v in violations if v.step == 5]
    assert {v.variables for v in first} == {(name,) for name in BACKBONE}
    flipped = [v for v in first if "requires_grad" in v.text_description]
    assert flipped and "requires_grad == True" in flipped[0].observed
    changed = [v for v in first if v.text_description.endswith(f"across {STEP} calls")]
    assert {v.what for v in changed} == {f"{name} changed during {STEP}" for name in BACKBONE}


def test_a_layer_frozen_by_mistake_is_caught_at_the_first_step() -> None:
    invariants = _infer()
    violations = _check(invariants, LoopSpec(seed=3, frozen=HEAD, requires_grad_off=HEAD))
    assert violations and violations[0].step == 0
    assert {v.variables for v in violations} == {(name,) for name in HEAD}


def test_a_variable_only_the_checked_run_has_is_not_judged() -> None:
    invariants = _infer(**FROZEN_BACKBONE)
    extra = (*MODEL_PARAMS, "Net.adapter.weight")
    spec = LoopSpec(seed=3, params=extra, frozen=BACKBONE, requires_grad_off=(*BACKBONE, extra[-1]))
    assert _check(invariants, spec) == []


def test_state_is_read_before_and_after_the_api_with_digests_for_data_only() -> None:
    by_attr = {inv.params.var.attr_name: inv for inv in _infer(**FROZEN_BACKBONE)}
    assert needed_state(by_attr["data"]) == {(STEP, "pre", True), (STEP, "post", True)}
    rg = by_attr["requires_grad"]
    assert needed_state(rg) == {(ZERO_GRAD, "pre", False), (ZERO_GRAD, "post", False)}


def test_a_selective_plan_records_what_the_invariants_read() -> None:
    invariants = _infer(**FROZEN_BACKBONE)
    plan = tracing_plan(invariants)
    assert plan.state_at(ZERO_GRAD, "pre") == (True, False)
    assert plan.state_at(STEP, "post") == (True, True)
    assert uncheckable_invariants(invariants, plan) == {}


def test_invariants_round_trip_through_the_file(tmp_path) -> None:
    invariants = _infer(**FROZEN_BACKBONE)
    dump_invariants(invariants, tmp_path / "inv.json")
    assert load_invariants(tmp_path / "inv.json").invariants == invariants.invariants
