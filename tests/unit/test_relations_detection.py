"""The relations added for silent bugs: learn from synthetic healthy runs, then catch the bug.

Every test infers from two healthy runs (different seeds), checks a third healthy
run for silence, then checks the buggy variant for the violation the relation
exists to find. The traces are built by ``tracegen`` from the schema structs.
"""

from __future__ import annotations

import pytest
from msgspec.structs import replace
from tracegen import FORWARD, MODEL_PARAMS, STEP, LoopSpec, stored_events

from traincheck.analysis.checker import Checker
from traincheck.analysis.infer_engine import infer_from_streams
from traincheck.analysis.invariants import InvariantSet
from traincheck.analysis.relations.known import select_relations
from traincheck.analysis.relations.var_periodic_change import UNCHANGED_CALLS_LIMIT
from traincheck.analysis.violations import Violation
from traincheck.events import ApiCall, ApiReturn, ArgValue, StoredEvent


def _infer(relation: str, **spec) -> InvariantSet:
    runs = [stored_events(LoopSpec(seed=seed, pid=100 + seed, **spec)) for seed in (1, 2)]
    return infer_from_streams(runs, select_relations([relation])).invariant_set


def _check(invariants: InvariantSet, spec: LoopSpec) -> list[Violation]:
    checker = Checker(invariants)
    violations = [v for e in stored_events(spec) for v in checker.feed(e)]
    return violations + checker.finish()


def test_var_periodic_change_catches_a_frozen_layer() -> None:
    invariants = _infer("VarPeriodicChangeRelation")
    texts = {inv.text_description for inv in invariants}
    assert texts == {f"{name}.data changes at every {STEP}" for name in MODEL_PARAMS}
    assert _check(invariants, LoopSpec(seed=3)) == []
    frozen = MODEL_PARAMS[:2]
    violations = _check(invariants, LoopSpec(seed=3, frozen=frozen))
    assert {v.variables for v in violations} == {(name,) for name in frozen}
    assert min(v.step for v in violations) == UNCHANGED_CALLS_LIMIT - 1


def test_single_update_catches_a_parameter_stepped_by_two_optimizers() -> None:
    invariants = _infer("SingleUpdateRelation")
    assert invariants.invariants, "a healthy loop updates each parameter once per iteration"
    assert _check(invariants, LoopSpec(seed=3)) == []
    head = MODEL_PARAMS[2:]
    violations = _check(invariants, LoopSpec(seed=3, second_optimizer=head))
    assert violations and violations[0].step == 0
    assert set(violations[0].variables) == set(head)


def test_consistent_input_catches_eval_mode_left_on() -> None:
    invariants = _infer("ConsistentInputRelation", eval_every=4)
    described = {inv.text_description: inv for inv in invariants}
    training = described["torch.nn.Module.__call__: training is always True"]
    assert training.precondition is not None
    assert training.precondition.describe() == "stage == 'train', on a step's first micro-batch"
    assert _check(invariants, LoopSpec(seed=3, eval_every=4)) == []
    violations = _check(invariants, LoopSpec(seed=3, eval_every=4, eval_left_on=True))
    assert violations and {v.text_description for v in violations} == {training.text_description}
    assert violations[0].step == 4


def test_consistent_output_catches_autocast_not_applied() -> None:
    invariants = _infer("ConsistentOutputRelation", forward_dtype="torch.bfloat16")
    texts = {inv.text_description for inv in invariants}
    assert "torch.nn.Module.__call__: result dtype is always 'torch.bfloat16'" in texts
    assert _check(invariants, LoopSpec(seed=3, forward_dtype="torch.bfloat16")) == []
    violations = _check(invariants, LoopSpec(seed=3, forward_dtype="torch.float32"))
    assert violations and violations[0].step == 0
    assert "torch.float32" in violations[0].observed


def _with_numbers(stored: StoredEvent) -> StoredEvent:
    """Give every optimizer step a learning rate and an integer argument, the same in
    every run: numbers a value relation could learn, and must not."""
    call = stored.event
    if not (isinstance(call, ApiCall) and call.api == STEP):
        return stored
    numbers = (ArgValue("lr", "float", 0.1), ArgValue("accumulate", "int", 4))
    return StoredEvent(stored.pid, stored.rank, replace(call, args=call.args + numbers))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@pytest.mark.parametrize(
    ("relation", "learnt"),
    [
        ("ConsistentInputRelation", f"{FORWARD}: training is always True"),
        ("ConsistentOutputRelation", f"{FORWARD}: result dtype is always 'torch.float32'"),
    ],
)
def test_value_relations_never_learn_numbers(relation: str, learnt: str) -> None:
    """Shapes and numeric arguments are run configuration: no invariant may name them."""
    specs = [LoopSpec(seed=s, pid=100 + s, eval_every=4, batches="sharded") for s in (1, 2)]
    runs = [[_with_numbers(e) for e in stored_events(spec)] for spec in specs]
    invariants = infer_from_streams(runs, select_relations([relation])).invariant_set
    # Not vacuous: the relation did learn from these runs, whose input and result
    # tensors have constant shapes and whose steps all take the same numbers.
    assert learnt in {inv.text_description for inv in invariants}
    named = [
        inv.text_description
        for inv in invariants
        if inv.params[1].prop == "shape" or _is_number(inv.params[1].value)
    ]
    assert named == []


SAMPLER_ITER = "torch.utils.data.Sampler.__iter__"


def _with_sampler_iterations(events: list[StoredEvent], epochs_at: set[int]) -> list[StoredEvent]:
    """A ``Sampler.__iter__`` before the first forward of each step in ``epochs_at`` (the
    training loader starts an epoch: ``RandomSampler``) and before every evaluation
    forward (the validation loader: ``SequentialSampler``). As in a Trainer run, both
    are iterated in stage ``train``: the stage changes when the evaluation forward runs."""
    out: list[StoredEvent] = []
    begun: set[int] = set()
    for stored in events:
        call = stored.event
        if isinstance(call, ApiCall) and call.api == FORWARD:
            evaluation = call.stage == "eval"
            if evaluation or (call.step in epochs_at and call.step not in begun):
                begun.add(call.step)
                sampler = ArgValue(
                    "sampler", "str", "SequentialSampler" if evaluation else "RandomSampler"
                )
                start = replace(
                    call, call_id=call.call_id + 10**6, api=SAMPLER_ITER, stage="train",
                    args=(sampler,),
                )  # fmt: skip
                end = ApiReturn(
                    call.ts_ns, start.call_id, call.thread, SAMPLER_ITER, call.step, "train"
                )
                out += [StoredEvent(stored.pid, stored.rank, e) for e in (start, end)]
        out.append(stored)
    return out


def test_a_value_met_only_at_the_first_step_is_not_ruled_out_later() -> None:
    """The reference runs iterate the training loader once (step 0) and the validation
    loader at every evaluation; a longer run starts a second epoch at step 10. "The
    sampler is always sequential except at step 0" would alarm there: what differs at
    the first iteration is an epoch boundary, which short runs cannot date."""
    specs = [LoopSpec(seed=s, pid=100 + s, eval_every=4) for s in (1, 2)]
    runs = [_with_sampler_iterations(stored_events(spec), {0}) for spec in specs]
    relations = select_relations(["ConsistentInputRelation"])
    invariants = infer_from_streams(runs, relations).invariant_set
    assert any(inv.params[0].api_full_name == FORWARD for inv in invariants), "not vacuous"
    longer = LoopSpec(seed=3, pid=103, eval_every=4, steps=20)
    checker = Checker(invariants)
    events = _with_sampler_iterations(stored_events(longer), {0, 10})
    assert [v.text_description for e in events for v in checker.feed(e)] == []


def test_var_periodic_change_catches_parameters_no_optimizer_steps() -> None:
    """A variable no step ever observes made its invariant vacuous (a GAN stepping
    the wrong optimizer, a head left out of the optimizer): healthy runs observed
    it from the first call, so a run that has not after a few calls is reported."""
    invariants = _infer("VarPeriodicChangeRelation")
    assert {inv.hint("first_update_within") for inv in invariants} == {1}
    left_out = MODEL_PARAMS[2:]
    violations = _check(invariants, LoopSpec(seed=3, params=MODEL_PARAMS[:2]))
    assert {v.variables for v in violations} == {(name,) for name in left_out}
    assert min(v.step for v in violations) == UNCHANGED_CALLS_LIMIT - 1
    assert "not updated by any of the first" in violations[0].what


def test_a_variable_first_updated_late_in_healthy_runs_gets_no_start_hint() -> None:
    """A backbone unfrozen at step 10 may be unfrozen later in a healthy run."""
    from traincheck.analysis.relations.var_periodic_change import _PeriodicCollector

    collector = _PeriodicCollector()
    var = (STEP, "torch.nn.Parameter", "Net.backbone.weight")
    collector.api_calls.update({(1, STEP): 20, (2, STEP): 20})
    collector.first_seen[var] = {1: 2, 2: 3}
    assert collector.first_update_hint(var) == (("first_update_within", 3),)
    collector.first_seen[var] = {1: 2, 2: 11}
    assert collector.first_update_hint(var) == ()
    collector.first_seen[var] = {1: 2}  # never observed in the second run
    assert collector.first_update_hint(var) == ()
