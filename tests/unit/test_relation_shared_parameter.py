"""SharedParameterRelation: a path that held the same Parameter as another (a tie) keeps it."""

from __future__ import annotations

from typing import Any

from tracegen import MODEL_PARAMS, ZERO_GRAD, LoopSpec, infer_relation, stored_events, violations_of

from traincheck.analysis.infer_engine import infer_from_streams
from traincheck.analysis.instrumentation import tracing_plan, uncheckable_invariants
from traincheck.analysis.invariants import InvariantSet
from traincheck.analysis.invariants_file import dump_invariants, load_invariants
from traincheck.analysis.relations.known import select_relations
from traincheck.analysis.violations import Violation
from traincheck.tracing_plan import TracingPlan

RELATION = "SharedParameterRelation"
EMBED, HEAD = "Net.embed.weight", "Net.head.weight"
PARAMS = (*MODEL_PARAMS, EMBED)
SHARED = {"params": PARAMS, "shared": ((EMBED, HEAD),)}
SHARED_TEXT = f"{HEAD} is the same Parameter as {EMBED} at every {ZERO_GRAD}"
"""zero_grad, backward and step observe the pair equally often here: the API whose
name sorts last is chosen (in a real run step 0's zero_grad is set-up, and
Optimizer.step wins)."""


def _infer(seeds: tuple[int, ...] = (1,), **spec: Any) -> InvariantSet:
    return infer_relation(RELATION, [LoopSpec(seed=s, pid=100 + s, **spec) for s in seeds])


def _check(invariants: InvariantSet, spec: LoopSpec) -> list[Violation]:
    return violations_of(invariants, spec)


def test_one_healthy_run_of_a_tied_model_gives_the_tie_and_an_untied_model_nothing() -> None:
    assert [inv.text_description for inv in _infer(**SHARED)] == [SHARED_TEXT]
    assert [inv.text_description for inv in _infer((1, 2), **SHARED)] == [SHARED_TEXT]
    assert len(_infer(params=PARAMS)) == 0


def test_healthy_variants_with_another_seed_length_or_width_raise_nothing() -> None:
    invariants = _infer(**SHARED)
    assert _check(invariants, LoopSpec(seed=3, steps=40, **SHARED)) == []
    assert _check(invariants, LoopSpec(seed=4, pid=9, shape=(64, 8), **SHARED)) == []


def test_a_head_that_was_never_tied_is_caught_at_the_first_step() -> None:
    violations = _check(_infer(**SHARED), LoopSpec(seed=3, untie_at=0, **SHARED))
    assert violations and violations[0].step == 0
    assert violations[0].variables == (EMBED, HEAD)
    assert violations[0].what == f"{HEAD} is not the same Parameter as {EMBED} before {ZERO_GRAD}"
    assert violations[0].observed.startswith(f"{HEAD} is a Parameter of its own")


def test_a_tie_broken_mid_run_is_caught_at_its_step() -> None:
    violations = _check(_infer(**SHARED), LoopSpec(seed=3, untie_at=4, **SHARED))
    assert violations and violations[0].step == 4


def test_a_pair_untied_in_a_healthy_run_is_no_invariant() -> None:
    runs = [stored_events(LoopSpec(seed=1, pid=101, untie_at=15, **SHARED))]
    outcome = infer_from_streams(runs, select_relations([RELATION]))
    assert len(outcome.invariant_set) == 0
    assert [r.reason for r in outcome.rejections] == ["a Parameter of its own in a healthy run"]


def test_the_plan_records_the_state_before_the_call_without_digests() -> None:
    invariants = _infer(**SHARED)
    plan = tracing_plan(invariants)
    assert plan.state_at(ZERO_GRAD, "pre") == (True, False)
    assert plan.state_at(ZERO_GRAD, "post") == (False, False)
    assert uncheckable_invariants(invariants, plan) == {}
    stateless = TracingPlan(state_points=())
    assert list(uncheckable_invariants(invariants, stateless).values()) == [
        f"variable state before {ZERO_GRAD} was not traced (selective plan)"
    ]


def test_invariants_round_trip_through_the_file(tmp_path) -> None:
    invariants = _infer(**SHARED)
    dump_invariants(invariants, tmp_path / "inv.json")
    assert load_invariants(tmp_path / "inv.json").invariants == invariants.invariants
