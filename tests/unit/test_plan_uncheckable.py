"""Invariants whose inputs a run could not trace are uncheckable: never passed, never violated."""

from __future__ import annotations

import dataclasses

from tracegen import ZERO_GRAD, LoopSpec, stored_events

from traincheck.analysis.checker import Checker
from traincheck.analysis.infer_engine import infer_from_streams
from traincheck.analysis.instrumentation import uncheckable_invariants
from traincheck.analysis.invariants import InvariantSet, VarNameParam, VarTypeParam
from traincheck.analysis.results import outcome_of, result_row
from traincheck.catalogue import DEFAULT_APIS
from traincheck.tracing_plan import TracingPlan


def _inferred() -> InvariantSet:
    runs = [LoopSpec(steps=20, seed=1), LoopSpec(steps=12, seed=2, pid=5151)]
    return infer_from_streams([stored_events(s) for s in runs]).invariant_set


def _mentions(invariant, api: str) -> bool:
    return any(getattr(p, "api_full_name", None) == api for p in invariant.params)


def test_invariants_on_an_api_the_plan_left_out_are_uncheckable_not_violated() -> None:
    invariants = _inferred()
    assert any(_mentions(inv, ZERO_GRAD) for inv in invariants)
    plan = TracingPlan(apis=DEFAULT_APIS - {ZERO_GRAD})
    uncheckable = uncheckable_invariants(invariants, plan)
    assert set(uncheckable) == {inv.id for inv in invariants if _mentions(inv, ZERO_GRAD)}

    # A run where zero_grad was not traced looks, to the checker, exactly like the
    # missing-zero_grad bug: without the plan it would be reported as violated.
    events = list(stored_events(LoopSpec(steps=10, seed=3, zero_grad=False)))
    unaware = Checker(invariants)
    assert [v for e in events for v in unaware.feed(e)] + unaware.finish()

    checker = Checker(invariants, uncheckable=uncheckable)
    violations = [v for e in events for v in checker.feed(e)] + checker.finish()
    assert all(v.invariant_id not in uncheckable for v in violations)
    judged = {result.invariant.id: result for result in checker.results()}
    assert uncheckable and set(uncheckable) <= set(judged)
    for inv_id in uncheckable:
        assert outcome_of(judged[inv_id]) == "uncheckable"
        row = result_row(judged[inv_id], ledger=_EmptyLedger())
        assert "was not traced" in row["uncheckable_reason"]


def test_apis_no_hook_produces_and_untracked_models_are_uncheckable() -> None:
    invariants = _inferred()
    renamed = InvariantSet(
        tuple(
            dataclasses.replace(
                inv, params=tuple(_rename(p, ZERO_GRAD, "mylib.reset") for p in inv.params)
            )
            for inv in invariants
        )
    )
    reasons = uncheckable_invariants(renamed, TracingPlan())
    assert reasons and all("no tracer hook produces mylib.reset" in r for r in reasons.values())
    # Wrapped by --modules-to-instr, mylib.reset produces calls but no variable
    # state: only the invariants that read state around it stay uncheckable.
    reasons = uncheckable_invariants(renamed, TracingPlan(modules_to_instr=("mylib",)))
    reads_state = {
        inv.id
        for inv in renamed
        if _mentions(inv, "mylib.reset")
        and any(isinstance(p, (VarTypeParam, VarNameParam)) for p in inv.params)
    }
    assert reads_state and set(reasons) == reads_state
    assert all("records no variable state" in r and "mylib.reset" in r for r in reasons.values())


def _rename(param, old: str, new: str):
    if getattr(param, "api_full_name", None) == old:
        return dataclasses.replace(param, api_full_name=new)
    return param


class _EmptyLedger:
    def examples(self, invariant_id: str) -> list:
        return []
