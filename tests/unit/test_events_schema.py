"""The per-point ``VarStates`` event: what readers see of it, and schema versions."""

from __future__ import annotations

import msgspec
import pytest

from traincheck.events import (
    SCHEMA_VERSION,
    ApiCall,
    Batch,
    VarState,
    VarStates,
    single_events,
)
from traincheck.wire import WireError, decode_batch, encode_batch


def _states(digests: list[int | None] | None) -> VarStates:
    return VarStates(
        5, 7, "post", 1, 3, "train",
        ["Net.fc.weight", "Net.fc.bias"],
        ["torch.nn.Parameter", "torch.nn.Parameter"],
        [(2, 4), (2,)],
        ["torch.float32", "torch.float32"],
        ["cpu", "cpu"],
        [True, False],
        ["nonzero", "none"],
        digests,
    )  # fmt: skip


def test_expand_gives_one_var_state_per_variable_in_order() -> None:
    weight, bias = _states([11, None]).expand()
    assert weight == VarState(
        5, 7, "post", 1, 3, "train", "Net.fc.weight", "torch.nn.Parameter", (2, 4),
        "torch.float32", "cpu", True, "nonzero", 11,
    )  # fmt: skip
    assert (bias.var_name, bias.requires_grad, bias.grad, bias.digest) == (
        "Net.fc.bias",
        False,
        "none",
        None,
    )
    assert all(s.digest is None for s in _states(None).expand())


def test_single_events_expands_only_var_states_and_keeps_the_order() -> None:
    call = ApiCall(1, 7, 0, 1, "torch.optim.Optimizer.step", 3, "train")
    events = list(single_events([call, _states(None), call]))
    assert [type(e).__name__ for e in events] == ["ApiCall", "VarState", "VarState", "ApiCall"]


def test_var_states_survive_the_wire_and_version_1_batches_stay_readable() -> None:
    batch = Batch(SCHEMA_VERSION, "run", 1, 0, 0, 0, [_states([1, 2])])
    assert decode_batch(encode_batch(batch)).events == [_states([1, 2])]
    old = Batch(1, "run", 1, 0, 0, 0, [_states(None).expand()[0]])
    assert decode_batch(encode_batch(old)).events == old.events
    with pytest.raises(WireError, match="schema version 9"):
        decode_batch(encode_batch(Batch(9, "run", 1, 0, 0, 0, [])))


def test_aliases_survive_the_wire_and_reach_each_variable() -> None:
    tied = msgspec.structs.replace(_states([1, 2]), aliases=[("Net.head.weight",), ()])
    (decoded,) = decode_batch(encode_batch(Batch(SCHEMA_VERSION, "run", 1, 0, 0, 0, [tied]))).events
    assert [s.aliases for s in decoded.expand()] == [("Net.head.weight",), ()]
    assert [s.aliases for s in _states(None).expand()] == [(), ()]
