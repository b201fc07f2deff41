"""Relation building blocks: call reconstruction, variable changes, incremental checkers."""

from __future__ import annotations

import pytest
from tracegen import AUTOGRAD_BACKWARD, BACKWARD, FORWARD, STEP, ZERO_GRAD, LoopSpec, stored_events

from traincheck.analysis.calls import CallRecord, CallStart, CallTracker
from traincheck.analysis.checker import Checker
from traincheck.analysis.invariants import APIParam, InvariantSet, VarTypeParam, make_invariant
from traincheck.analysis.relations.api_contain import ContainParams
from traincheck.events import ApiCall, ApiReturn, StoredEvent


def _records(spec: LoopSpec) -> list[CallRecord]:
    tracker = CallTracker()
    signals = [tracker.feed(e) for e in stored_events(spec)]
    return [s for s in signals if isinstance(s, CallRecord)]


def test_call_records_carry_states_changes_and_children() -> None:
    records = _records(LoopSpec(steps=2, seed=1))
    by_api = {(r.api, r.start.event.step): r for r in records}
    step0 = by_api[(STEP, 0)]
    assert len(step0.pre) == len(step0.post) == 4
    assert step0.changes() == {("torch.nn.Parameter", "data", "anything", "changed")}
    assert by_api[(ZERO_GRAD, 0)].changes() == set()
    assert by_api[(ZERO_GRAD, 1)].changes() == {("torch.nn.Parameter", "grad", "non_zero", None)}
    assert by_api[(BACKWARD, 0)].child_apis() == {"torch.autograd.backward"}
    assert by_api[(ZERO_GRAD, 1)].start.props["args.set_to_none"] is True
    assert "meta_vars.step" in by_api[(ZERO_GRAD, 1)].start.props


def _set(*invariants):
    return InvariantSet(tuple(invariants))


def _contain(parent: str, event, group: str = "parent_func_call_pre"):
    return make_invariant(
        "APIContainRelation", (APIParam(parent), event), None, group=group,
        text_description="t", num_positive_examples=5, num_negative_examples=0,
    )  # fmt: skip


def test_missing_child_call_is_a_violation() -> None:
    inv = _contain(BACKWARD, APIParam("torch.autograd.grad"))
    checker = Checker(_set(inv))
    violations = [v for e in stored_events(LoopSpec(steps=2)) for v in checker.feed(e)]
    assert [v.step for v in violations] == [0, 1]
    assert violations[0].what == f"{BACKWARD} did not call torch.autograd.grad"
    assert "torch.autograd.backward" in violations[0].observed


def test_hand_built_params_are_typed_for_the_checker_and_validated() -> None:
    inv = _contain(BACKWARD, APIParam("torch.autograd.backward"))
    assert type(inv.params) is tuple
    (result,) = Checker(_set(inv)).results()
    assert isinstance(result.invariant.params, ContainParams) and result.invariant == inv
    with pytest.raises(ValueError, match="attribute 'weight' is not tracked"):
        Checker(_set(_contain(BACKWARD, VarTypeParam("torch.nn.Parameter", "weight"))))


def test_call_without_variable_states_is_unchecked_not_violated() -> None:
    inv = _contain(
        "torch.nn.Module.__call__",
        VarTypeParam("torch.nn.Parameter", "data", "anything", "changed"),
    )
    checker = Checker(_set(inv))
    violations = [v for e in stored_events(LoopSpec(steps=3)) for v in checker.feed(e)]
    (result,) = checker.results()
    assert violations == [] and result.unchecked == 3 and result.triggered == 0


def test_cover_is_per_thread_and_per_process() -> None:
    cover = make_invariant(
        "FunctionCoverRelation", (APIParam("a"), APIParam("b")), None, group="func_cover",
        text_description="a before b", num_positive_examples=5, num_negative_examples=0,
    )  # fmt: skip

    def call(pid: int, thread: int, cid: int, api: str) -> list[StoredEvent]:
        return [
            StoredEvent(pid, 0, ApiCall(cid, cid, 0, thread, api, 0, "train")),
            StoredEvent(pid, 0, ApiReturn(cid, cid, thread, api, 0, "train")),
        ]

    checker = Checker(_set(cover))
    events = call(1, 1, 1, "a") + call(2, 1, 1, "b") + call(1, 2, 2, "b") + call(1, 1, 3, "b")
    violations = [v for e in events for v in checker.feed(e)]
    assert [(v.pid, v.thread) for v in violations] == [(2, 1), (1, 2)]
    assert checker.results()[0].passed == 1


def test_call_start_props_never_hold_identities() -> None:
    tracker = CallTracker()
    starts = [
        s for e in stored_events(LoopSpec(steps=1)) if isinstance(s := tracker.feed(e), CallStart)
    ]
    # Every call of the one-step loop, the nested autograd call included.
    assert sorted(start.api for start in starts) == sorted(
        [ZERO_GRAD, FORWARD, BACKWARD, AUTOGRAD_BACKWARD, STEP]
    )
    keys = {k for start in starts for k in start.props}
    assert {"meta_vars.step", "meta_vars.stage", "args.training"} <= keys
    assert [k for k in keys if not k.startswith(("meta_vars.", "args."))] == []
