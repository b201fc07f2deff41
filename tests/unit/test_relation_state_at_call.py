"""StateAtCallRelation: the gradient state of every parameter at a call boundary."""

from __future__ import annotations

from tracegen import MODEL_PARAMS, STEP, LoopSpec, stored_events

from traincheck.analysis.checker import Checker
from traincheck.analysis.infer_engine import infer_from_streams
from traincheck.analysis.invariants import InvariantSet
from traincheck.analysis.invariants_file import dump_invariants, load_invariants
from traincheck.analysis.relations.known import select_relations
from traincheck.analysis.violations import Violation

RELATION = "StateAtCallRelation"
STEP_HAS_GRADS = f"before every {STEP}, every torch.nn.Parameter has grad == present"


def _infer(**spec) -> InvariantSet:
    runs = [stored_events(LoopSpec(seed=seed, pid=100 + seed, **spec)) for seed in (1, 2)]
    return infer_from_streams(runs, select_relations([RELATION])).invariant_set


def _check(invariants: InvariantSet, spec: LoopSpec) -> list[Violation]:
    checker = Checker(invariants)
    return [v for e in stored_events(spec) for v in checker.feed(e)] + checker.finish()


def test_step_needs_a_gradient_on_every_parameter() -> None:
    invariants = _infer()
    texts = {inv.text_description for inv in invariants}
    assert STEP_HAS_GRADS in texts
    assert f"after every {STEP}, every torch.nn.Parameter has grad == present" not in texts, (
        "the post twin of a pre invariant is dropped"
    )
    assert _check(invariants, LoopSpec(seed=3, steps=40)) == []


def test_frozen_layer_is_caught_at_the_first_step() -> None:
    invariants = _infer()
    frozen = MODEL_PARAMS[:2]
    violations = [
        v
        for v in _check(invariants, LoopSpec(seed=3, frozen=frozen))
        if v.text_description == STEP_HAS_GRADS
    ]
    assert violations and violations[0].step == 0
    assert set(violations[0].variables) == set(frozen)
    assert "grad == None" in violations[0].observed


def test_stale_optimizer_is_caught_at_the_first_step() -> None:
    invariants = _infer()
    violations = _check(invariants, LoopSpec(seed=3, stale_optimizer=True))
    assert any(v.text_description == STEP_HAS_GRADS and v.step == 0 for v in violations)


def test_invariants_round_trip_through_the_file(tmp_path) -> None:
    invariants = _infer()
    dump_invariants(invariants, tmp_path / "inv.json")
    assert load_invariants(tmp_path / "inv.json").invariants == invariants.invariants
