"""EqualVariablesRelation: variables equal at every healthy observation (tied weights) stay so."""

from __future__ import annotations

from typing import Any

from tracegen import MODEL_PARAMS, STEP, LoopSpec, stored_events

from traincheck.analysis.checker import Checker
from traincheck.analysis.infer_engine import infer_from_streams
from traincheck.analysis.invariants import InvariantSet
from traincheck.analysis.invariants_file import dump_invariants, load_invariants
from traincheck.analysis.relations.known import select_relations
from traincheck.analysis.violations import Violation

RELATION = "EqualVariablesRelation"
EMBED, HEAD = "Net.embed.weight", "Net.head.weight"
PARAMS = (*MODEL_PARAMS, EMBED, HEAD)
TIED = {"params": PARAMS, "tied": ((EMBED, HEAD),)}
TIED_TEXT = f"{HEAD}.data equals {EMBED}.data at every {STEP}"


def _infer(seeds: tuple[int, ...] = (1, 2), **spec: Any) -> InvariantSet:
    runs = [stored_events(LoopSpec(seed=seed, pid=100 + seed, **spec)) for seed in seeds]
    return infer_from_streams(runs, select_relations([RELATION])).invariant_set


def _check(invariants: InvariantSet, spec: LoopSpec) -> list[Violation]:
    checker = Checker(invariants)
    return [v for e in stored_events(spec) for v in checker.feed(e)] + checker.finish()


def test_tied_weights_give_one_invariant_and_untied_ones_none() -> None:
    assert [inv.text_description for inv in _infer(**TIED)] == [TIED_TEXT]
    assert len(_infer(params=PARAMS)) == 0


def test_three_tied_variables_give_two_invariants_not_three() -> None:
    third = "Net.decoder.weight"
    spec = {"params": (*PARAMS, third), "tied": ((EMBED, HEAD), (EMBED, third))}
    texts = sorted(inv.text_description for inv in _infer(**spec))
    assert texts == [
        f"{EMBED}.data equals {third}.data at every {STEP}",
        f"{HEAD}.data equals {third}.data at every {STEP}",
    ], "each name is paired with the first of its class (equality is transitive)"


def test_a_pair_equal_in_one_run_only_is_no_invariant() -> None:
    runs = [
        stored_events(LoopSpec(seed=1, pid=101, **TIED)),
        stored_events(LoopSpec(seed=2, pid=102, params=PARAMS)),
    ]
    assert len(infer_from_streams(runs, select_relations([RELATION])).invariant_set) == 0


def test_a_pair_untied_late_in_a_healthy_run_is_no_invariant() -> None:
    assert len(_infer(untie_at=15, **TIED)) == 0


def test_a_healthy_run_and_a_wider_variant_raise_nothing() -> None:
    invariants = _infer(**TIED)
    assert _check(invariants, LoopSpec(seed=3, steps=40, **TIED)) == []
    assert _check(invariants, LoopSpec(seed=4, pid=9, shape=(64, 8), **TIED)) == []


def test_a_broken_tie_is_caught_at_its_step() -> None:
    invariants = _infer(**TIED)
    violations = _check(invariants, LoopSpec(seed=3, untie_at=4, **TIED))
    assert violations and violations[0].step == 4
    assert violations[0].variables == (EMBED, HEAD)
    assert violations[0].what == f"{HEAD} and {EMBED} differ after {STEP}"


def test_a_pair_of_which_the_run_observes_one_is_not_judged() -> None:
    invariants = _infer(**TIED)
    assert _check(invariants, LoopSpec(seed=3, params=(*MODEL_PARAMS, EMBED))) == []


def test_invariants_round_trip_through_the_file(tmp_path) -> None:
    invariants = _infer(**TIED)
    dump_invariants(invariants, tmp_path / "inv.json")
    assert load_invariants(tmp_path / "inv.json").invariants == invariants.invariants
