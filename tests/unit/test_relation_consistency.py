"""ConsistencyRelation: replicas of a data-parallel job stay identical across ranks."""

from __future__ import annotations

from tracegen import MODEL_PARAMS, STEP, LoopSpec, stored_events

from traincheck.analysis.checker import Checker
from traincheck.analysis.infer_engine import infer_from_streams
from traincheck.analysis.invariants import InvariantSet
from traincheck.analysis.invariants_file import dump_invariants, load_invariants
from traincheck.analysis.relations.known import select_relations
from traincheck.analysis.violations import Violation

RELATION = "ConsistencyRelation"
TEXT = (
    "every torch.nn.Parameter.data is identical across ranks after each torch.optim.Optimizer.step"
)


def _ranks(seed: int, drift: bool = False, steps: int = 12) -> list[LoopSpec]:
    """Two ranks of one job; the same generator seed makes the replicas' digests equal."""
    return [
        LoopSpec(steps=steps, seed=seed + (rank if drift else 0), pid=500 + rank, rank=rank)
        for rank in (0, 1)
    ]


def _infer(*runs: list[LoopSpec]) -> InvariantSet:
    streams = [stored_events(specs) for specs in runs]
    return infer_from_streams(streams, select_relations([RELATION])).invariant_set


def _check(invariants: InvariantSet, specs: list[LoopSpec]) -> list[Violation]:
    checker = Checker(invariants)
    return [v for e in stored_events(specs) for v in checker.feed(e)] + checker.finish()


def test_replicas_equal_across_ranks_is_inferred_and_holds_on_a_healthy_job() -> None:
    invariants = _infer(_ranks(1), _ranks(2))
    assert [inv.text_description for inv in invariants] == [TEXT]
    assert invariants.invariants[0].precondition is None
    assert _check(invariants, _ranks(3, steps=30)) == []


def test_drifting_replicas_are_caught_at_the_first_step() -> None:
    invariants = _infer(_ranks(1), _ranks(2))
    violations = _check(invariants, _ranks(3, drift=True))
    assert violations and violations[0].step == 0
    assert violations[0].relation == RELATION
    assert "rank 1 and rank 0" in violations[0].what or "rank 0 and rank 1" in violations[0].what
    assert len(violations[0].variables) == 4


def test_single_process_runs_neither_yield_nor_check_it() -> None:
    single = [LoopSpec(seed=s, pid=100 + s) for s in (1, 2)]
    assert len(_infer(*[[s] for s in single])) == 0
    invariants = _infer(_ranks(1), _ranks(2))
    assert _check(invariants, [LoopSpec(seed=5)]) == []


def test_replicas_that_differ_in_healthy_runs_give_no_invariant() -> None:
    """Sharded (tensor-parallel) parameters differ by design: no invariant, no alarm."""
    assert len(_infer(_ranks(1, drift=True), _ranks(2, drift=True))) == 0


def test_a_restarted_job_is_not_compared_with_its_previous_processes() -> None:
    """Elastic restart: new processes for the same ranks start a fresh pairing."""
    invariants = _infer(_ranks(1), _ranks(2))
    first = _ranks(3)
    restarted = [LoopSpec(steps=12, seed=9, pid=600 + rank, rank=rank) for rank in (0, 1)]
    checker = Checker(invariants)
    events = stored_events(first) + stored_events(restarted)
    assert [v for e in events for v in checker.feed(e)] == []


def _tensor_parallel(seed: int, sharded: tuple[str, ...], drift: bool = False) -> list[LoopSpec]:
    """Two ranks whose ``sharded`` parameters differ by design; with ``drift`` the
    replicated ones differ too (rank 1 trains from another seed)."""
    return [
        LoopSpec(
            steps=12,
            seed=seed + (rank if drift else 0),
            pid=700 + rank,
            rank=rank,
            sharded=sharded,
        )
        for rank in (0, 1)
    ]


def test_replicated_and_sharded_are_learned_per_variable() -> None:
    """Tensor parallel: the sharded weight gets no invariant, every replicated one its own."""
    sharded = (MODEL_PARAMS[0],)
    invariants = _infer(_tensor_parallel(1, sharded), _tensor_parallel(2, sharded))
    names = sorted(inv.params.var.var_name for inv in invariants)
    assert names == sorted(MODEL_PARAMS[1:])
    assert all(inv.text_description.endswith(STEP) for inv in invariants)
    assert _check(invariants, _tensor_parallel(3, sharded)) == []
    violations = _check(invariants, _tensor_parallel(3, sharded, drift=True))
    assert violations and violations[0].step == 0
    assert {name for v in violations for name in v.variables} == set(MODEL_PARAMS[1:])


def test_per_variable_invariants_survive_the_file(tmp_path) -> None:
    sharded = (MODEL_PARAMS[0],)
    invariants = _infer(_tensor_parallel(1, sharded), _tensor_parallel(2, sharded))
    path = tmp_path / "invariants.json"
    dump_invariants(invariants, path)
    assert load_invariants(path).invariants == invariants.invariants
