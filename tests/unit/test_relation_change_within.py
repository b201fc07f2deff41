"""ChangeWithinRelation: a variable's content changes only within calls of one API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tracegen import (
    COPY,
    MODEL_PARAMS,
    PARAMETER,
    STEP,
    LoopSpec,
    infer_relation,
    violations_of,
)

from traincheck.analysis.instrumentation import needed_state
from traincheck.analysis.invariants import InvariantSet
from traincheck.analysis.invariants_file import dump_invariants, load_invariants
from traincheck.analysis.violations import Violation

RELATION = "ChangeWithinRelation"
EMA = {"ema_every": 4, "eval_every": 0}
"""A healthy loop that evaluates an EMA of the weights every 4 steps (and restores)."""


def _infer(seeds: tuple[int, ...] = (1,), **spec: Any) -> InvariantSet:
    return infer_relation(RELATION, [LoopSpec(seed=s, pid=100 + s, **spec) for s in seeds])


def _check(invariants: InvariantSet, spec: LoopSpec) -> list[Violation]:
    return violations_of(invariants, spec)


def test_one_healthy_run_teaches_that_parameters_change_only_within_the_step(
    tmp_path: Path,
) -> None:
    invariants = _infer(**EMA)
    assert [inv.text_description for inv in invariants] == [
        f"{PARAMETER}.data changes only within {STEP}"
    ]
    (invariant,) = invariants
    assert invariant.precondition is None
    assert invariant.num_positive_examples == 20, "one example per step, not per parameter"
    assert needed_state(invariant) == {(STEP, "pre", True), (STEP, "post", True)}
    dump_invariants(invariants, tmp_path / "invariants.json")
    assert list(load_invariants(tmp_path / "invariants.json")) == list(invariants)


def test_healthy_variants_raise_nothing() -> None:
    invariants = _infer(**EMA)
    variants = [
        LoopSpec(seed=3, steps=30, **EMA),
        LoopSpec(seed=4, accumulate=4, shape=(32, 16), **EMA),  # no step for 3 micro-batches
        LoopSpec(seed=5, frozen=MODEL_PARAMS[:2], eval_every=3),  # frozen: never change
        LoopSpec(seed=6, record_every=3, **EMA),  # a sampled trace skips steps
    ]
    for spec in variants:
        assert _check(invariants, spec) == [], spec


def test_weights_left_from_an_ema_evaluation_are_caught_at_the_next_step() -> None:
    invariants = _infer(**EMA)
    violations = _check(invariants, LoopSpec(seed=3, ema_restored=False, **EMA))
    assert [v.step for v in violations] == [4, 8, 12, 16]
    first = violations[0]
    assert first.apis == (STEP, COPY), "the calls that overwrite parameters are named"
    assert set(first.variables) == set(MODEL_PARAMS)
    assert first.what.startswith(f"{', '.join(sorted(MODEL_PARAMS)[:3])} and 1 more changed ")
    assert f"between the end of {STEP} at step 3 and the start of {STEP} at step 4" in first.what
    assert f"{COPY} x4" in first.observed
