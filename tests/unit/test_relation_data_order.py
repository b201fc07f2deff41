"""DataOrder: batches differ across epochs and steps where healthy runs say they do."""

from __future__ import annotations

from tracegen import LoopSpec, stored_events

from traincheck.analysis.checker import Checker
from traincheck.analysis.infer_engine import InferResult, infer_from_streams
from traincheck.analysis.invariants import InvariantSet
from traincheck.analysis.relations.data_order import TOO_FEW_EPOCHS
from traincheck.analysis.relations.known import select_relations
from traincheck.analysis.violations import Violation

EPOCHS = "the i-th batch of each epoch from torch.utils.data.DataLoader.__next__ differs"
STEPS = "each batch from torch.utils.data.DataLoader.__next__ differs from the previous one"


def _infer(*specs: LoopSpec) -> InferResult:
    return infer_from_streams(
        [stored_events([spec]) for spec in specs], select_relations(["DataOrderRelation"])
    )


def _check(invariants: InvariantSet, spec: LoopSpec) -> list[Violation]:
    checker = Checker(invariants)
    return [v for e in stored_events([spec]) for v in checker.feed(e)] + checker.finish()


def _healthy(seed: int, **kw: object) -> LoopSpec:
    return LoopSpec(seed=seed, data_seed=seed, loader="shuffled", val_batches=2, **kw)  # type: ignore[arg-type]


def _texts(result: InferResult) -> list[str]:
    return sorted(inv.text_description for inv in result.invariant_set)


def test_infers_both_scopes_and_keeps_the_sequential_loader_out() -> None:
    result = _infer(_healthy(1), _healthy(2))
    texts = _texts(result)
    assert len(texts) == 2
    assert texts[0].startswith(STEPS) and texts[1].startswith(EPOCHS)
    by_text = {inv.text_description: inv for inv in result.invariant_set}
    epochs = by_text[texts[1]]
    # The validation loader repeats its order every epoch in healthy runs: the
    # precondition has to exclude it, by its shuffle flag or its loader ordinal.
    assert epochs.precondition is not None
    assert "shuffle" in epochs.precondition.describe() or "loader" in epochs.precondition.describe()


def test_healthy_runs_of_other_lengths_and_epoch_sizes_raise_nothing() -> None:
    invariants = _infer(_healthy(1), _healthy(2)).invariant_set
    assert invariants
    for spec in (_healthy(3, steps=40), _healthy(4, epoch_len=2), _healthy(5, epoch_len=9)):
        assert _check(invariants, spec) == []


def test_an_epoch_in_the_same_order_is_caught_at_the_second_epoch() -> None:
    invariants = _infer(_healthy(1), _healthy(2)).invariant_set
    bug = LoopSpec(seed=3, data_seed=3, loader="same_order", val_batches=2)
    violations = _check(invariants, bug)
    epoch_violations = [v for v in violations if v.text_description.startswith(EPOCHS)]
    assert epoch_violations, violations
    assert min(v.step for v in epoch_violations) == bug.epoch_len  # first batch of epoch 2
    assert all(v.relation == "DataOrderRelation" for v in violations)
    assert not [v for v in violations if v.text_description.startswith(STEPS)]


def test_an_iterator_restarted_every_step_repeats_the_first_batch() -> None:
    invariants = _infer(_healthy(1), _healthy(2)).invariant_set
    violations = _check(invariants, LoopSpec(seed=3, loader="restarted", val_batches=0))
    assert {v.text_description[:20] for v in violations} == {STEPS[:20], EPOCHS[:20]}
    assert min(v.step for v in violations) == 1


def test_too_few_epochs_give_no_epoch_invariant() -> None:
    short = [LoopSpec(seed=s, data_seed=s, loader="shuffled", steps=7) for s in (1, 2)]
    result = _infer(*short)  # one epoch pair per run: 2 in all, enough
    assert any(t.startswith(EPOCHS) for t in _texts(result))
    one = _infer(LoopSpec(seed=1, loader="shuffled", steps=7))  # a single epoch pair
    assert not any(t.startswith(EPOCHS) for t in _texts(one))
    reasons = {r.reason for r in one.rejections if r.relation == "DataOrderRelation"}
    assert TOO_FEW_EPOCHS in reasons
