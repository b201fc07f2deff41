"""ConsistentInputOutput, DistinctArgument, implied-invariant suppression, pair clauses."""

from __future__ import annotations

from collections import Counter

from tracegen import LoopSpec, stored_events

from traincheck.analysis.checker import Checker
from traincheck.analysis.infer_engine import InferResult, infer_from_streams
from traincheck.analysis.instrumentation import tracing_plan
from traincheck.analysis.invariants import InvariantSet
from traincheck.analysis.preconditions import deduce, feature_key, pair_props
from traincheck.analysis.relations.base import IMPLIED
from traincheck.analysis.relations.known import select_relations
from traincheck.analysis.violations import Violation


def _infer(relation: str, *runs: list[LoopSpec]) -> InferResult:
    return infer_from_streams(
        [stored_events(specs) for specs in runs], select_relations([relation])
    )


def _check(invariants: InvariantSet, specs: list[LoopSpec]) -> list[Violation]:
    checker = Checker(invariants)
    return [v for e in stored_events(specs) for v in checker.feed(e)] + checker.finish()


def _ranks(seed: int, batches: str = "sharded", steps: int = 12) -> list[LoopSpec]:
    return [
        LoopSpec(steps=steps, seed=seed, pid=700 + r, rank=r, batches=batches, data_seed=seed)
        for r in (0, 1)
    ]


def test_output_dtype_follows_input_dtype_unless_autocast_is_active() -> None:
    runs = [[LoopSpec(seed=s, batches="sharded", autocast_every=3)] for s in (1, 2)]
    invariants = _infer("ConsistentInputOutputRelation", *runs).invariant_set
    by_text = {inv.text_description: inv for inv in invariants}
    dtype = by_text["torch.nn.Module.__call__: result dtype equals argument input.dtype"]
    assert dtype.precondition is not None and dtype.precondition.inverted
    assert "autocast" in dtype.precondition.describe()
    healthy = LoopSpec(seed=3, steps=30, batches="sharded", autocast_every=4)
    assert _check(invariants, [healthy]) == []
    promoted = LoopSpec(seed=3, batches="sharded", forward_dtype="torch.float64")
    violations = _check(invariants, [promoted])
    assert violations and all(v.relation == "ConsistentInputOutputRelation" for v in violations)
    assert "torch.float64" in violations[0].what


def test_ranks_on_the_same_batches_violate_distinct_inputs_across_ranks() -> None:
    result = _infer("DistinctArgumentRelation", _ranks(1), _ranks(2))
    texts = sorted(inv.text_description for inv in result.invariant_set)
    assert texts == [
        "each torch.nn.Module.__call__ gets a different input than the previous one",
        "the n-th torch.nn.Module.__call__ of every rank gets a different input",
    ]
    assert _check(result.invariant_set, _ranks(3, steps=20)) == []
    same = _check(result.invariant_set, _ranks(3, batches="same_on_all_ranks"))
    assert same and {v.text_description for v in same} == {texts[1]}
    assert same[0].step == 0 and "rank" in same[0].what


def test_one_batch_fed_at_every_step_violates_distinct_consecutive_inputs() -> None:
    result = _infer("DistinctArgumentRelation", [LoopSpec(seed=1, batches="sharded")])
    assert [inv.text_description for inv in result.invariant_set] == [
        "each torch.nn.Module.__call__ gets a different input than the previous one"
    ]
    violations = _check(result.invariant_set, [LoopSpec(seed=2, batches="repeated")])
    assert len(violations) == 19  # every call after the first of 20


def test_single_process_run_yields_no_cross_rank_invariant_and_no_digest_in_plan() -> None:
    without = _infer("DistinctArgumentRelation", [LoopSpec(seed=1)])
    assert len(without.invariant_set) == 0
    assert not tracing_plan(without.invariant_set).input_digests
    with_digests = _infer("DistinctArgumentRelation", _ranks(1))
    assert tracing_plan(with_digests.invariant_set).input_digests


def test_single_update_keeps_only_the_strongest_of_its_near_duplicates() -> None:
    result = _infer("SingleUpdateRelation", [LoopSpec(seed=1)], [LoopSpec(seed=2)])
    assert [inv.text_description for inv in result.invariant_set] == [
        "each torch.nn.Parameter.data is changed by at most one torch.optim.Optimizer.step "
        "between two torch.Tensor.backward calls"
    ]
    implied = [r for r in result.rejections if r.reason == IMPLIED]
    assert len(implied) == 2
    double = LoopSpec(seed=3, second_optimizer=("Net.fc2.weight",))
    assert _check(result.invariant_set, [double])


def test_consistent_clause_separates_pairs_that_agree_from_pairs_that_do_not() -> None:
    train = {"meta_vars.step": 3, "meta_vars.stage": "train"}
    evaluation = {"meta_vars.step": 3, "meta_vars.stage": "eval"}
    positives = Counter(
        {
            feature_key(pair_props(train, train)): 10,
            feature_key(pair_props(evaluation, evaluation)): 4,
        }
    )
    negatives = Counter({feature_key(pair_props(evaluation, train)): 2})
    deduction = deduce(positives, negatives)
    assert deduction.ok and deduction.precondition is not None
    clauses = [c for conj in deduction.precondition.conjuncts for c in conj]
    assert any(c.type == "consistent" and c.prop_name == "meta_vars.stage" for c in clauses)
    assert deduction.precondition.holds(pair_props(train, train))
    assert not deduction.precondition.holds(pair_props(evaluation, train))


def test_tracer_input_summary_digests_content_not_identity() -> None:
    """The ``input`` the tracer records: same content, same digest; other content, other."""
    import torch

    from traincheck.tracer.summaries import MAX_INPUT_DIGEST_BYTES, module_input_arg

    batch = torch.randn(64, 784)
    (arg,) = module_input_arg((batch,), with_digest=True)
    assert (arg.name, arg.kind, arg.dtype, arg.shape) == (
        "input",
        "tensor",
        "torch.float32",
        (64, 784),
    )
    assert module_input_arg((batch.clone(),), with_digest=True)[0].value == arg.value
    assert module_input_arg((batch + 1,), with_digest=True)[0].value != arg.value
    assert module_input_arg((batch,), with_digest=False)[0].value is None
    assert module_input_arg(("text", batch), with_digest=True) == ()
    big = torch.zeros(MAX_INPUT_DIGEST_BYTES // 2 + 1, 4)  # over the limit: strided digest
    changed = big.clone()
    changed[-1, 0] = 1.0
    assert (
        module_input_arg((big,), with_digest=True)[0].value
        != module_input_arg((changed,), with_digest=True)[0].value
    )
