"""The state cache reuses readings only while a tensor provably did not change."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from traincheck.tracer.digest import tensor_digest
from traincheck.tracer.varstate import StateCache, param_states


def _tracer() -> SimpleNamespace:
    def report_error(where: str, exc: BaseException) -> None:
        raise exc

    return SimpleNamespace(meta=SimpleNamespace(step=0, stage="train"), report_error=report_error)


def _read(cache: StateCache, params: list[tuple[str, torch.Tensor]], phase: str):
    return param_states(_tracer(), 1, phase, params, with_digest=True, cache=cache).expand()


def _model() -> tuple[torch.nn.Linear, list[tuple[str, torch.Tensor]]]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    return model, list(model.named_parameters())


def test_gradient_zeroed_in_place_is_seen_at_every_phase() -> None:
    model, params = _model()
    cache = StateCache()
    model(torch.randn(2, 4)).sum().backward()
    assert {s.grad for s in _read(cache, params, "post")} == {"nonzero"}
    model.zero_grad(set_to_none=False)  # zero_() bumps the version: no stale reuse
    assert {s.grad for s in _read(cache, params, "pre")} == {"zero"}
    assert {s.grad for s in _read(cache, params, "post")} == {"zero"}
    model(torch.randn(2, 4)).sum().backward()  # accumulates in place
    assert {s.grad for s in _read(cache, params, "post")} == {"nonzero"}
    model.zero_grad()  # set to None
    assert {s.grad for s in _read(cache, params, "pre")} == {"none"}


def test_pre_digest_is_reused_only_while_the_version_is_unchanged() -> None:
    model, params = _model()
    cache = StateCache()
    first = _read(cache, params, "post")
    again = _read(cache, params, "pre")
    assert [s.digest for s in again] == [s.digest for s in first]
    assert cache.digests_reused == len(params)
    with torch.no_grad():
        model.weight.add_(1.0)
    changed = _read(cache, params, "pre")
    assert changed[0].digest == tensor_digest(model.weight) != first[0].digest
    assert changed[1].digest == first[1].digest


def test_post_digest_is_recomputed_even_without_a_version_bump() -> None:
    """Fused optimizers write without bumping the version counter: a post reading
    never trusts the cache."""
    model, params = _model()
    cache = StateCache()
    before = _read(cache, params, "pre")[0].digest
    model.weight.data.mul_(2.0)  # through .data: the parameter's version is unchanged
    after = _read(cache, params, "post")[0].digest
    assert after == tensor_digest(model.weight) != before


def test_a_gradient_set_anew_is_seen_though_nothing_else_changed() -> None:
    """The group-level reuse compares gradient objects, not only their versions."""
    model, params = _model()
    cache = StateCache()
    model(torch.randn(2, 4)).sum().backward()
    assert {s.grad for s in _read(cache, params, "post")} == {"nonzero"}
    for _, param in params:
        param.grad = torch.zeros_like(param)  # a new tensor, version 0
    assert {s.grad for s in _read(cache, params, "pre")} == {"zero"}
    assert {s.grad for s in _read(cache, params, "pre")} == {"zero"}


def test_a_parameter_given_new_data_gets_its_new_shape_and_digest() -> None:
    model, params = _model()
    cache = StateCache()
    first = _read(cache, params, "post")
    model.weight.data = torch.ones(5, 4, dtype=torch.float64)
    again = _read(cache, params, "pre")
    assert again[0].shape == (5, 4) and again[0].dtype == "torch.float64"
    assert again[0].digest == tensor_digest(model.weight) != first[0].digest
    unchanged = ("shape", "dtype", "digest")
    assert [getattr(again[1], f) for f in unchanged] == [getattr(first[1], f) for f in unchanged]


def test_a_point_with_other_names_is_not_read_under_the_old_ones() -> None:
    _, params = _model()
    cache = StateCache()
    _read(cache, params, "post")
    renamed = [(f"Other.{name}", tensor) for name, tensor in params]
    assert [s.var_name for s in _read(cache, renamed, "pre")] == ["Other.weight", "Other.bias"]


def test_the_cache_does_not_keep_a_model_alive() -> None:
    import gc
    import weakref

    model, params = _model()
    cache = StateCache()
    model(torch.randn(2, 4)).sum().backward()
    _read(cache, params, "post")
    alive = weakref.ref(model.weight)
    del model, params
    gc.collect()
    assert alive() is None


def test_aliases_are_recorded_with_the_states_and_follow_a_new_mapping() -> None:
    _, params = _model()
    cache = StateCache()
    tied = {"weight": ("head.weight",)}

    def read(aliases: dict[str, tuple[str, ...]]) -> list[tuple[str, ...]]:
        states = param_states(
            _tracer(), 1, "pre", params, with_digest=False, cache=cache, aliases=aliases
        )
        return [s.aliases for s in states.expand()]

    assert read({}) == [(), ()]
    assert read(tied) == [("head.weight",), ()]
    assert read({}) == [(), ()], "untied: same names and tensors, another mapping"
