"""Inference on synthetic traces: the expected invariants, generalisation, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
from tracegen import BACKWARD, FORWARD, STEP, ZERO_GRAD, LoopSpec, stored_events, write_trace

from traincheck.analysis.infer_engine import infer, infer_from_streams
from traincheck.analysis.invariants_file import dump_invariants
from traincheck.analysis.relations.base import TOO_FEW_POSITIVES
from traincheck.analysis.relations.known import select_relations
from traincheck.sidecar.store import read_trace


@pytest.fixture(scope="module")
def healthy_result():
    runs = [LoopSpec(steps=20, seed=1), LoopSpec(steps=12, seed=2, pid=5151)]
    return infer_from_streams([stored_events(s) for s in runs])


def _texts(result) -> dict[str, object]:
    return {inv.text_description: inv for inv in result.invariant_set}


def test_api_contain_invariants_of_a_healthy_loop(healthy_result) -> None:
    texts = _texts(healthy_result)
    zero_grad = texts[f"{ZERO_GRAD} changes torch.nn.Parameter.grad from non_zero to None"]
    assert zero_grad.precondition.describe() == "NOT (step == 0), on a step's first micro-batch"
    assert (zero_grad.num_positive_examples, zero_grad.num_negative_examples) == (30, 2)
    step = texts[f"{STEP} changes torch.nn.Parameter.data"]
    assert step.precondition is None and step.num_positive_examples == 32
    # Every backward of these loops is a step's first micro-batch: confined to those.
    contain = texts[f"{BACKWARD} calls torch.autograd.backward"].precondition
    assert contain is not None and not contain.conjuncts
    assert contain.describe() == "on a step's first micro-batch"
    assert texts[f"{BACKWARD} changes torch.nn.Parameter.grad from None to non_zero"]


def test_ordering_invariants_of_a_healthy_loop(healthy_result) -> None:
    texts = _texts(healthy_result)
    cover = texts[f"{ZERO_GRAD} is called before every {STEP} (since the previous {STEP})"]
    assert cover.relation == "FunctionCoverRelation" and cover.precondition is None
    lead = texts[f"every {ZERO_GRAD} is followed by {STEP} before the next {ZERO_GRAD}"]
    assert lead.relation == "FunctionLeadRelation"
    # The last step of a run is followed by nothing, but that window is censored (the
    # run just stopped), so it does not refute "every step is followed by zero_grad".
    assert f"every {STEP} is followed by {ZERO_GRAD} before the next {STEP}" in texts
    # Nested calls take no part in ordering invariants.
    assert not [t for t in texts if "torch.autograd.backward is called" in t]


def test_no_step_clause_other_than_step_zero(healthy_result) -> None:
    step_clauses = [
        (inv.text_description, clause)
        for inv in healthy_result.invariant_set
        if inv.precondition is not None
        for conj in inv.precondition.conjuncts
        for clause in conj
        if clause.prop_name == "meta_vars.step"
    ]
    # Not vacuous: zero_grad's "NOT (step == 0)" is a step clause (see the first test).
    zero_grad = f"{ZERO_GRAD} changes torch.nn.Parameter.grad from non_zero to None"
    assert zero_grad in {text for text, _ in step_clauses}
    assert {(clause.type, clause.values) for _, clause in step_clauses} == {("constant", (0,))}


def test_eval_phases_yield_stage_preconditions() -> None:
    runs = [LoopSpec(steps=12, seed=s, eval_every=3) for s in (1, 2)]
    result = infer_from_streams([stored_events(s) for s in runs])
    texts = _texts(result)
    training = texts[f"{FORWARD}: training is always True"].precondition
    assert training is not None
    first = {"meta_vars.step": 4, "meta_vars.micro_batch": 0}
    assert not training.holds({**first, "meta_vars.stage": "eval"})
    assert training.holds({**first, "meta_vars.stage": "train"})
    # An eval forward no longer closes the window of a training one (same-stage anchors):
    # the lead holds for both stages.
    lead = texts[f"every {FORWARD} is followed by {BACKWARD} before the next {FORWARD}"]
    assert lead.precondition is not None and not lead.precondition.conjuncts


def test_single_short_run_gives_no_chance_invariants() -> None:
    result = infer_from_streams([stored_events(LoopSpec(steps=2))])
    assert len(result.invariant_set) == 0
    assert {r.reason for r in result.rejections} == {TOO_FEW_POSITIVES}


def test_invariant_must_hold_in_every_run() -> None:
    healthy = stored_events(LoopSpec(steps=10, seed=1))
    stale = stored_events(LoopSpec(steps=10, seed=2, stale_optimizer=True, pid=99))
    texts = _texts(infer_from_streams([healthy, stale]))
    assert f"{STEP} changes torch.nn.Parameter.data" not in texts


def test_same_traces_in_any_order_give_identical_bytes(tmp_path: Path) -> None:
    specs = [
        LoopSpec(steps=8, seed=1),
        LoopSpec(steps=15, seed=2, eval_every=4),
        LoopSpec(steps=11, seed=3, set_to_none=False),
    ]
    dirs = [write_trace(tmp_path / f"run{i}", s) for i, s in enumerate(specs)]
    outputs = []
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        traces = [read_trace(dirs[i]) for i in order]
        out = tmp_path / f"inv-{'-'.join(map(str, order))}.json"
        dump_invariants(infer(traces).invariant_set, out)
        outputs.append(out.read_bytes())
    assert len(set(outputs)) == 1
    assert b'"invariants": [' in outputs[0]


def test_relation_selection() -> None:
    only = select_relations(enable=["FunctionCoverRelation"])
    result = infer_from_streams([stored_events(LoopSpec(steps=6))], only)
    assert {inv.relation for inv in result.invariant_set} == {"FunctionCoverRelation"}
    with pytest.raises(ValueError, match="unknown relation Nope"):
        select_relations(disable=["Nope"])


def test_interleaved_ranks_are_tracked_separately() -> None:
    ranks = [LoopSpec(steps=10, seed=i, pid=100 + i, rank=i) for i in range(2)]
    events = stored_events(ranks, batch_size=7)
    texts = _texts(infer_from_streams([events]))
    assert f"{ZERO_GRAD} is called before every {STEP} (since the previous {STEP})" in texts
