"""Precondition deduction: generalises across run lengths, never uses run identities."""

from __future__ import annotations

import itertools
from collections import Counter

from traincheck.analysis.preconditions import (
    UNSEPARABLE,
    Clause,
    Precondition,
    clause_from_json,
    deduce,
    example_props,
    feature_key,
    precondition_from_json,
)
from traincheck.events import ArgValue


def _examples(*props: dict) -> Counter:
    return Counter(feature_key(p) for p in props)


def _ctx(step: int, stage: str = "train", **args: object) -> dict:
    return {
        "meta_vars.step": step,
        "meta_vars.stage": stage,
        **{f"args.{k}": v for k, v in args.items()},
    }


def test_no_negatives_is_unconditional() -> None:
    result = deduce(_examples(_ctx(1), _ctx(2)), Counter())
    assert result.ok and result.precondition is None


def test_first_step_negative_gives_inverted_step_zero() -> None:
    positives = _examples(*(_ctx(k) for k in range(1, 20)))
    result = deduce(positives, _examples(_ctx(0)))
    assert result.ok and result.precondition is not None
    assert result.precondition.inverted
    assert result.precondition.describe() == "NOT (step == 0)"
    # A longer checked run: every later step is in force, step 0 is not.
    assert all(result.precondition.holds(_ctx(k)) for k in range(1, 500))
    assert not result.precondition.holds(_ctx(0))


def test_inverted_precondition_is_broadened_with_init_stage() -> None:
    positives = _examples(*(_ctx(k) for k in range(1, 10)))
    result = deduce(positives, _examples(_ctx(0, "init")))
    assert result.precondition is not None
    assert result.precondition.describe() == "NOT (stage == 'init' OR step == 0)"


def test_stage_separates_directly() -> None:
    positives = _examples(*(_ctx(k, "train") for k in range(10)))
    negatives = _examples(*(_ctx(k, "eval") for k in range(5, 8)))
    result = deduce(positives, negatives)
    assert result.precondition == Precondition(
        ((Clause("constant", "meta_vars.stage", "str", ("train",)),),)
    )


def test_step_values_other_than_zero_never_become_clauses() -> None:
    positives = _examples(*(_ctx(k) for k in range(0, 19)))
    result = deduce(positives, _examples(_ctx(19)))
    assert not result.ok and result.reason == UNSEPARABLE


def test_argument_values_can_separate() -> None:
    positives = _examples(*(_ctx(k, set_to_none=True) for k in range(6)))
    negatives = _examples(*(_ctx(k, set_to_none=False) for k in range(6)))
    result = deduce(positives, negatives)
    assert result.precondition is not None
    assert result.precondition.describe() == "args.set_to_none == True"
    assert not result.precondition.holds(_ctx(3, set_to_none=1))  # bool is not int


def test_single_odd_positive_cannot_carve_a_rule() -> None:
    positives = _examples(*(_ctx(k, "train") for k in range(10)), _ctx(3, "eval", x="odd"))
    negatives = _examples(*(_ctx(k, "eval") for k in range(10)))
    assert not deduce(positives, negatives).ok


def test_deduction_ignores_example_order() -> None:
    examples = [_ctx(k, s) for k in range(6) for s in ("train", "eval", "init")]
    outcomes = set()
    for perm in itertools.islice(itertools.permutations(examples), 0, 200, 37):
        pos = _examples(*(e for e in perm if e["meta_vars.stage"] != "eval"))
        neg = _examples(*(e for e in perm if e["meta_vars.stage"] == "eval"))
        outcomes.add(deduce(pos, neg))
    assert len(outcomes) == 1


def test_example_props_exclude_run_identities() -> None:
    args = (ArgValue("set_to_none", "bool", True), ArgValue("x", "tensor"))
    props = example_props(3, "train", {"epoch": 1, "pid": None}, args)
    assert props == {
        "meta_vars.step": 3,
        "meta_vars.stage": "train",
        "meta_vars.epoch": 1,
        "meta_vars.micro_batch": 0,
        "args.set_to_none": True,
    }


def test_clause_json_roundtrip_and_rejections() -> None:
    clause = Clause("constant", "meta_vars.step", "int", (0,))
    assert clause_from_json(clause.to_json()) == clause
    pre = Precondition(((clause,),), inverted=True)
    assert precondition_from_json(pre.to_json()) == pre
    bad = [
        {**clause.to_json(), "prop_dtype": "__import__('os')"},
        {**clause.to_json(), "prop_name": "process_id"},
        {**clause.to_json(), "type": "regex"},
        {**clause.to_json(), "values": ["0"]},
        {**clause.to_json(), "values": []},
    ]
    for data in bad:
        try:
            clause_from_json(data)
        except ValueError:
            continue
        raise AssertionError(f"accepted {data}")
