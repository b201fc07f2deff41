"""ConsistentInput on numbers: "X is 0" where zero depends on the stage, nothing else.

A number is configuration (another run passes another dropout probability), so
no value of it is learned; whether it is zero is, when the healthy runs switch it
off in one stage and on in another: ``dropout_p=self.p if self.training else 0.0``.
"""

from __future__ import annotations

from tracegen import SDPA, LoopSpec, infer_relation, violations_of

from traincheck.analysis.invariants import InvariantSet
from traincheck.analysis.violations import Violation

RELATION = "ConsistentInputRelation"
ZERO_IN_EVAL = f"{SDPA}: dropout_p is 0"


def _infer(**spec: object) -> InvariantSet:
    return infer_relation(RELATION, [LoopSpec(seed=1, pid=101, eval_every=4, **spec)])  # type: ignore[arg-type]


def _check(invariants: InvariantSet, **spec: object) -> list[Violation]:
    return violations_of(invariants, LoopSpec(seed=3, pid=303, eval_every=4, **spec))  # type: ignore[arg-type]


def _zero_invariants(invariants: InvariantSet) -> list[str]:
    return [i.text_description for i in invariants if "dropout_p" in i.text_description]


def test_a_number_switched_off_in_evaluation_is_learned_from_one_run() -> None:
    invariants = _infer(attention_dropout=0.2)
    assert _zero_invariants(invariants) == [ZERO_IN_EVAL], _zero_invariants(invariants)
    zero = next(i for i in invariants if i.text_description == ZERO_IN_EVAL)
    assert zero.precondition is not None and "eval" in zero.precondition.describe()


def test_another_probability_raises_nothing_and_dropout_in_eval_is_caught() -> None:
    invariants = _infer(attention_dropout=0.2)
    assert _check(invariants, attention_dropout=0.5) == []
    assert _check(invariants, attention_dropout=0.0) == [], "no dropout at all is healthy"
    violations = _check(invariants, attention_dropout=0.2, attention_dropout_in_eval=True)
    assert violations and violations[0].step == 4, "the first evaluation (after 4 steps)"
    assert {v.text_description for v in violations} == {ZERO_IN_EVAL}
    assert violations[0].observed == "dropout_p is not 0"


def test_a_number_zero_everywhere_or_nowhere_is_configuration() -> None:
    assert _zero_invariants(_infer(attention_dropout=0.0)) == []
    assert _zero_invariants(_infer(attention_dropout=0.2, attention_dropout_in_eval=True)) == []
