"""The targeted wrappers of training_apis (and autocast's markers in apis), in process.

Each runs real torch code with every hook installed against ``ListRecorder``
(tests/unit/listrecorder.py) and reads the calls recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from listrecorder import Call, ListRecorder, installed
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from traincheck.catalogue import (
    AUTOCAST_ENTER,
    AUTOCAST_EXIT,
    DATALOADER_NEXT,
    MODULE_STATE_DICT,
    SAMPLER_ITER,
    SAMPLER_SET_EPOCH,
    TENSOR_COPY,
    TENSOR_REQUIRES_GRAD,
    TORCH_LOAD,
    TORCH_SAVE,
)
from traincheck.tracer.training_apis import BATCH_DIGEST_BYTES, batch_digest
from traincheck.tracing_plan import TracingPlan


@pytest.fixture
def recorder() -> Iterator[ListRecorder]:
    yield from installed(TracingPlan(param_digests=False, grad_states=False))


def values(call: Call) -> dict[str, object]:
    return {name: arg.value for name, arg in call.args.items()}


def test_functional_calls_carry_the_arguments_bugs_get_wrong(recorder: ListRecorder) -> None:
    x = torch.randn(4, 3)
    F.dropout(x, 0.2, training=False)
    F.cross_entropy(x, torch.tensor([0, 1, 2, 0]), reduction="sum", label_smoothing=0.1)
    q = torch.randn(1, 2, 4, 8)
    F.scaled_dot_product_attention(q, q, q, is_causal=True)
    torch.nn.Dropout(0.3)(x)  # through the module: the same wrapper sees it
    dropout = recorder.of("torch.nn.functional.dropout")
    assert [(values(c)["p"], values(c)["training"]) for c in dropout] == [(0.2, False), (0.3, True)]
    (loss,) = recorder.of("torch.nn.functional.cross_entropy")
    assert values(loss)["reduction"] == "sum" and values(loss)["label_smoothing"] == 0.1
    assert values(loss)["ignore_index"] == -100
    (sdpa,) = recorder.of("torch.nn.functional.scaled_dot_product_attention")
    assert values(sdpa)["is_causal"] is True and values(sdpa)["dropout_p"] == 0.0
    assert sdpa.args["input"].shape == (1, 2, 4, 8)


def test_grad_scaler_and_autocast_are_calls_and_step_is_a_marker(recorder: ListRecorder) -> None:
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(torch.randn(2, 3)).float().sum()
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    scaler.step(optimizer)
    scaler.update()
    order = [c.api for c in recorder.calls.values() if c.depth == 0]
    scaler_apis = [a for a in order if "GradScaler" in a or "autocast" in a]
    assert scaler_apis == [
        AUTOCAST_ENTER,
        AUTOCAST_EXIT,
        "torch.amp.GradScaler.scale",
        "torch.amp.GradScaler.unscale_",
        "torch.amp.GradScaler.step",
        "torch.amp.GradScaler.update",
    ]
    (enter,) = recorder.of(AUTOCAST_ENTER)
    assert values(enter) == {"device_type": "cpu", "dtype": "torch.bfloat16", "enabled": True}
    assert recorder.errors == []


def _loader(*, shuffle: bool, batch_size: int = 4) -> DataLoader[tuple[torch.Tensor, ...]]:
    data = TensorDataset(torch.arange(48, dtype=torch.float32).reshape(12, 4))
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle)


def test_each_batch_has_its_position_loader_and_digest(recorder: ListRecorder) -> None:
    train, val = _loader(shuffle=False), _loader(shuffle=True, batch_size=6)
    for _ in range(2):
        list(train)
    list(val)
    batches = recorder.of(DATALOADER_NEXT)
    yielded = [c for c in batches if c.exception is None]
    assert [values(c)["index"] for c in yielded] == [0, 1, 2, 0, 1, 2, 0, 1]
    assert [values(c)["loader"] for c in yielded] == ["0"] * 6 + ["1"] * 2
    assert [values(c)["shuffle"] for c in yielded] == [False] * 6 + [True] * 2
    assert [values(c)["sampler"] for c in yielded][-1] == "RandomSampler"
    assert [c.exception for c in batches if c.exception] == ["StopIteration"] * 3
    digests = [c.result.value for c in yielded if c.result is not None]
    assert len(digests) == 8 and len(set(digests[:3])) == 3  # three distinct batches
    assert digests[:3] == digests[3:6]  # sequential: the same order every epoch
    assert len(recorder.of(SAMPLER_ITER)) == 3


def test_set_epoch_is_recorded_and_a_digest_reads_the_first_bytes_only(
    recorder: ListRecorder,
) -> None:
    data = TensorDataset(torch.zeros(8, 2))
    sampler = DistributedSampler(data, num_replicas=1, rank=0)
    sampler.set_epoch(3)
    assert [values(c) for c in recorder.of(SAMPLER_SET_EPOCH)] == [{"epoch": 3}]
    big = torch.zeros(BATCH_DIGEST_BYTES)  # 4x the bytes read
    changed = big.clone()
    changed[-1] = 1.0
    assert batch_digest(big) == batch_digest(changed)
    changed[0] = 1.0
    assert batch_digest(big) != batch_digest(changed)


def test_parameters_checkpoints_and_state_dicts(recorder: ListRecorder, tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].weight.requires_grad_(False)
    torch.zeros(2).requires_grad_()  # not a parameter: not recorded
    state = model.state_dict()  # recurses into each layer: one call recorded
    torch.save(state, tmp_path / "ckpt.pt")
    torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert [values(c) for c in recorder.of(TENSOR_REQUIRES_GRAD)] == [{"requires_grad": False}]
    assert [values(c)["module"] for c in recorder.of(MODULE_STATE_DICT)] == ["Sequential"]
    assert [values(c)["obj"] for c in recorder.of(TORCH_SAVE)] == ["OrderedDict"]
    assert [values(c)["weights_only"] for c in recorder.of(TORCH_LOAD)] == [True]


def test_parameter_copies_are_calls_and_other_copies_are_not(recorder: ListRecorder) -> None:
    model = torch.nn.Linear(2, 2)
    other = torch.zeros(2)
    with torch.no_grad():
        model.weight.copy_(torch.ones(2, 2))  # an EMA swapped in
        other.copy_(torch.ones(2))  # not a parameter: not recorded
    assert torch.equal(model.weight, torch.ones(2, 2)) and torch.equal(other, torch.ones(2))
    model.load_state_dict(torch.nn.Linear(2, 2).state_dict())  # copies weight and bias
    assert len(recorder.of(TENSOR_COPY)) == 3


def test_a_plan_without_the_apis_installs_no_wrapper() -> None:
    original = F.dropout
    for recorder in installed(TracingPlan(apis=frozenset())):
        assert F.dropout is original
        F.dropout(torch.ones(2), 0.5)
        assert recorder.calls == {}
    assert F.dropout is original
