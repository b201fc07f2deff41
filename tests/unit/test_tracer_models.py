"""Parameter names come from model structure, deterministically and without user input."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.modules.module as module_mod

from traincheck.tracer.models import ModelRegistry


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(2, 3)
        self.block = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(3, 1))


@pytest.fixture
def registry() -> Iterator[ModelRegistry]:
    reg = ModelRegistry()
    handles = [
        module_mod.register_module_module_registration_hook(reg.on_module_registered),
        module_mod.register_module_parameter_registration_hook(reg.on_parameter_registered),
    ]
    yield reg
    for handle in handles:
        handle.remove()


def test_names_follow_root_class_and_path(registry: ModelRegistry) -> None:
    first, second = Net(), Net()
    assert registry.name_of(first.fc1.weight) == "Net.fc1.weight"
    assert registry.name_of(first.block[1].bias) == "Net.block.1.bias"
    assert registry.name_of(second.fc1.weight) == "Net[1].fc1.weight"
    names = [name for name, _ in registry.tracked_params()]
    assert names[:2] == ["Net.fc1.weight", "Net.fc1.bias"]
    assert len(names) == 8


def test_params_no_module_owns_are_named_after_the_optimizer(registry: ModelRegistry) -> None:
    loose = torch.nn.Parameter(torch.zeros(2))
    model = Net()
    optimizer = torch.optim.SGD([*model.parameters(), loose], lr=0.1)
    named = registry.optimizer_params(optimizer)
    assert named[0][0] == "Net.fc1.weight"
    assert named[-1] == ("optimizer[0].param[4]", loose)


def test_models_built_before_the_hooks_are_found_at_their_first_call() -> None:
    model = Net()
    registry = ModelRegistry()
    assert registry.name_of(model.fc1.weight) is None
    registry.observe_root_call(model.block)
    registry.observe_root_call(model)
    assert registry.name_of(model.fc1.weight) == "Net.fc1.weight"
    assert registry.name_of(model.block[1].weight) == "Net.block.1.weight"


def test_registry_keeps_models_weakly(registry: ModelRegistry) -> None:
    model = Net()
    assert registry.tracked_params()
    del model
    assert registry.tracked_params() == []


def test_a_compiled_model_is_named_after_the_model_it_compiles(registry: ModelRegistry) -> None:
    """With or without torch.compile, the same parameters get the same names (and
    module calls the same class), so invariants inferred from one check the other."""
    from traincheck.tracer.summaries import module_call_args

    model = Net()
    compiled = torch.compile(model, backend="eager")  # wraps; compiles at the first call
    assert type(compiled).__name__ == "OptimizedModule"
    registry.observe_root_call(compiled)
    assert registry.name_of(model.fc1.weight) == "Net.fc1.weight"
    assert [name for name, _ in registry.tracked_params()][:2] == [
        "Net.fc1.weight",
        "Net.fc1.bias",
    ]
    assert module_call_args(compiled) == module_call_args(model)
    assert module_call_args(compiled)[0].value == "Net"


def test_the_same_named_list_is_handed_out_until_the_optimizer_changes(
    registry: ModelRegistry,
) -> None:
    model = Net()
    optimizer = torch.optim.SGD(model.fc1.parameters(), lr=0.1)
    first = registry.optimizer_params(optimizer)
    assert registry.optimizer_params(optimizer) is first
    optimizer.add_param_group({"params": list(model.block.parameters())})
    grown = registry.optimizer_params(optimizer)
    assert [name for name, _ in grown] == [
        "Net.fc1.weight",
        "Net.fc1.bias",
        "Net.block.1.weight",
        "Net.block.1.bias",
    ]


class TiedLM(torch.nn.Module):
    """An output layer tied to the embedding: one Parameter under two paths."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(5, 3)
        self.head = torch.nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight


def test_a_parameter_registered_twice_is_one_name_with_the_other_path_as_alias(
    registry: ModelRegistry,
) -> None:
    model = TiedLM()
    assert registry.name_of(model.head.weight) == "TiedLM.embed.weight"
    assert [name for name, _ in registry.tracked_params()] == ["TiedLM.embed.weight"]
    assert registry.aliases() == {"TiedLM.embed.weight": ("TiedLM.head.weight",)}


def test_untying_drops_the_alias_and_names_the_head_on_its_own(registry: ModelRegistry) -> None:
    model = TiedLM()
    tied = registry.aliases()
    Net()  # another model: a rebuild that finds the same tie keeps the same mapping
    assert registry.aliases() is tied
    model.head.weight = torch.nn.Parameter(model.embed.weight.detach().clone())
    assert registry.aliases() == {}
    assert registry.name_of(model.head.weight) == "TiedLM.head.weight"


def test_a_model_that_ties_nothing_has_no_aliases(registry: ModelRegistry) -> None:
    Net()
    assert registry.aliases() == {}
