"""Which kinds of parameter an optimizer weight-decays, as recorded at every step."""

from __future__ import annotations

import torch

from traincheck.events import ArgValue
from traincheck.tracer.param_groups import decay_by_kind
from traincheck.tracer.summaries import optimizer_args


def _model(width: int = 8, depth: int = 2) -> torch.nn.Module:
    layers: list[torch.nn.Module] = [torch.nn.Embedding(10, width)]
    for _ in range(depth):
        layers += [torch.nn.Linear(width, width), torch.nn.LayerNorm(width)]
    return torch.nn.Sequential(*layers)


def _split(model: torch.nn.Module, *, swapped: bool = False) -> torch.optim.Optimizer:
    """nanoGPT's decay / no-decay groups; ``swapped`` inverts the condition."""
    params = list(model.parameters())
    decay = [p for p in params if (p.dim() >= 2) != swapped]
    no_decay = [p for p in params if (p.dim() >= 2) == swapped]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    )


def _described(optimizer: torch.optim.Optimizer) -> dict[str, object]:
    return {arg.name: arg.value for arg in decay_by_kind(optimizer)}


def test_decay_groups_are_described_by_the_kind_of_parameter_they_hold() -> None:
    healthy = {"weight_decay[matrices]": "on", "weight_decay[vectors]": "off"}
    assert _described(_split(_model())) == healthy
    assert _described(_split(_model(width=32, depth=5))) == healthy, "width and depth"
    assert _described(_split(_model(), swapped=True)) == {
        "weight_decay[matrices]": "off",
        "weight_decay[vectors]": "on",
    }


def test_the_description_ignores_group_order_and_the_configured_decay() -> None:
    model = _model()
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    reordered = torch.optim.SGD(
        [{"params": vectors, "weight_decay": 0.0}, {"params": matrices, "weight_decay": 5e-4}],
        lr=0.1,
    )
    assert _described(reordered) == _described(_split(model))


def test_one_group_and_a_mixed_kind() -> None:
    model = _model()
    assert _described(torch.optim.AdamW(model.parameters())) == {
        "weight_decay[matrices]": "on",
        "weight_decay[vectors]": "on",
    }
    assert _described(torch.optim.SGD(model.parameters(), lr=0.1)) == {
        "weight_decay[matrices]": "off",
        "weight_decay[vectors]": "off",
    }
    first, second = [p for p in model.parameters() if p.dim() >= 2][:2]
    partly = torch.optim.SGD(
        [{"params": [first], "weight_decay": 0.1}, {"params": [second]}], lr=0.1
    )
    assert _described(partly) == {"weight_decay[matrices]": "partly"}


def test_computed_once_until_the_groups_change() -> None:
    model = _model()
    optimizer = _split(model)
    first = decay_by_kind(optimizer)
    assert decay_by_kind(optimizer) is first, "a step costs a lookup, not a pass over params"
    optimizer.param_groups[1]["weight_decay"] = 0.01
    assert _described(optimizer)["weight_decay[vectors]"] == "on", "rewritten decay is seen"
    extra = torch.nn.Parameter(torch.ones(3, 3))
    optimizer.add_param_group({"params": [extra], "weight_decay": 0.0})
    assert _described(optimizer)["weight_decay[matrices]"] == "partly", "added group is seen"


def test_a_decay_that_is_not_a_plain_number_says_nothing() -> None:
    optimizer = _split(_model())
    optimizer.param_groups[0]["weight_decay"] = torch.tensor(0.1)
    assert decay_by_kind(optimizer) == ()


def test_recorded_with_the_optimizer_step_arguments() -> None:
    args = optimizer_args(_split(_model()))
    assert ArgValue("weight_decay[matrices]", "str", "on") in args
    assert args[0] == ArgValue("optimizer", "optimizer", "AdamW")
