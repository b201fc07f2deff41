"""The instrumentation plan: derived from invariants, parsed by the tracer, applied per step."""

from __future__ import annotations

import json
from typing import Any

import pytest

from traincheck.analysis.instrumentation import (
    instrumentation_for,
    tracing_plan,
    uncheckable_invariants,
    untraceable_apis,
)
from traincheck.analysis.invariants import (
    APIParam,
    Invariant,
    InvariantSet,
    VarTypeParam,
    make_invariant,
)
from traincheck.analysis.invariants_file import dump_invariants
from traincheck.analysis.preconditions import Clause, Precondition
from traincheck.catalogue import SUBMODULE_CALL
from traincheck.tracing_plan import TracingPlan, plan_from_json


def _invariants() -> InvariantSet:
    lead = make_invariant(
        "FunctionLeadRelation",
        (APIParam("torch.optim.Optimizer.zero_grad"), APIParam("torch.optim.Optimizer.step")),
        Precondition(((Clause("constant", "args.set_to_none", "bool", (True,)),),)),
        group="first",
        text_description="zero_grad leads step",
        num_positive_examples=3,
        num_negative_examples=0,
    )
    contain = make_invariant(
        "APIContainRelation",
        (
            APIParam("torch.optim.Optimizer.step"),
            VarTypeParam("torch.nn.Parameter", "data", "anything", "changed"),
        ),
        Precondition(((Clause("constant", "meta_vars.stage", "str", ("train",)),),)),
        group="parent",
        text_description="step changes data",
        num_positive_examples=3,
        num_negative_examples=0,
    )
    return InvariantSet((lead, contain))


def test_instrumentation_lists_apis_variables_args_and_meta_vars() -> None:
    section = instrumentation_for(_invariants())
    assert section["apis"] == ["torch.optim.Optimizer.step", "torch.optim.Optimizer.zero_grad"]
    assert section["variables"] == [{"var_type": "torch.nn.Parameter", "attr_name": "data"}]
    assert section["args"] == ["set_to_none"]
    assert section["meta_vars"] == ["stage"]


def test_tracing_plan_traces_only_what_the_invariants_need() -> None:
    plan = tracing_plan(_invariants())
    assert plan.traces("torch.optim.Optimizer.step")
    assert not plan.traces("torch.nn.Module.__call__")
    assert plan.param_digests and not plan.grad_states


def test_invariants_file_carries_the_instrumentation(tmp_path) -> None:
    path = tmp_path / "inv.json"
    dump_invariants(_invariants(), path)
    document = json.loads(path.read_text())
    assert document["instrumentation"] == instrumentation_for(_invariants())


def test_apis_no_hook_produces_are_reported_untraceable() -> None:
    invariants = InvariantSet(
        (
            make_invariant(
                "FunctionCoverRelation",
                (APIParam("mylib.train_step"), APIParam("torch.optim.Optimizer.step")),
                None,
                group="first",
                text_description="",
                num_positive_examples=1,
                num_negative_examples=0,
            ),
        )
    )
    assert untraceable_apis(invariants) == ["mylib.train_step"]
    assert untraceable_apis(invariants, ("mylib",)) == []


def _state_at_call(api: str, phase: str) -> object:
    values = ("non_zero", "anything") if phase == "pre" else ("anything", "non_zero")
    return make_invariant(
        "StateAtCallRelation",
        (APIParam(api), VarTypeParam("torch.nn.Parameter", "grad", *values)),
        None,
        group="first",
        text_description="",
        num_positive_examples=3,
        num_negative_examples=0,
    )


def test_state_points_are_exactly_where_invariants_read_state() -> None:
    step, backward = "torch.optim.Optimizer.step", "torch.Tensor.backward"
    invariants = InvariantSet((*_invariants(), _state_at_call(step, "pre")))
    plan = tracing_plan(invariants)
    # "step changes data": digests before and after; "grad present before step": pre.
    assert plan.state_points == ((step, "post", True), (step, "pre", True))
    assert plan.state_at(step, "pre") == (True, True)
    assert plan.state_at(backward, "post") == (False, False)
    grads_only = tracing_plan(InvariantSet((_state_at_call(backward, "post"),)))
    assert grads_only.state_points == ((backward, "post", False),)
    assert grads_only.state_at(backward, "pre") == (False, False)
    assert instrumentation_for(invariants)["state_points"][0] == {
        "api": step,
        "phase": "post",
        "digest": True,
    }


def test_a_gradient_that_is_none_before_or_after_a_call_is_read_at_that_phase() -> None:
    """None is the gradient state "no gradient", not "unconstrained" (found on a
    GAN, where no other invariant happened to ask for the state before backward)."""
    backward, zero_grad = "torch.Tensor.backward", "torch.optim.Optimizer.zero_grad"
    contains = [
        make_invariant(
            "APIContainRelation",
            (APIParam(api), VarTypeParam("torch.nn.Parameter", "grad", pre, post)),
            None,
            group="parent",
            text_description=f"{api} changes grad from {pre} to {post}",
            num_positive_examples=3,
            num_negative_examples=0,
        )
        for api, pre, post in ((backward, None, "non_zero"), (zero_grad, "non_zero", None))
    ]
    plan = tracing_plan(InvariantSet(tuple(contains)))
    assert plan.state_points == (
        (backward, "post", False),
        (backward, "pre", False),
        (zero_grad, "post", False),
        (zero_grad, "pre", False),
    )


def test_full_tracing_records_state_where_it_always_did() -> None:
    full = TracingPlan()
    assert full.state_at("torch.optim.Optimizer.step", "post") == (True, True)
    assert full.state_at("torch.optim.Optimizer.zero_grad", "pre") == (True, False)
    assert full.state_at("torch.Tensor.backward", "post") == (True, False)
    assert full.state_at("torch.nn.Module.__call__", "pre") == (True, True)  # buffers
    assert full.state_at("torch.nn.utils.clip_grad_norm_", "pre") == (False, False)


def test_a_state_point_the_plan_left_out_makes_its_invariant_uncheckable() -> None:
    step = "torch.optim.Optimizer.step"
    needs_post = _state_at_call(step, "post")
    plan = tracing_plan(InvariantSet((_state_at_call(step, "pre"),)))
    reasons = uncheckable_invariants(InvariantSet((needs_post,)), plan)
    assert reasons == {
        needs_post.id: f"variable state after {step} was not traced (selective plan)"
    }


def test_plan_round_trips_through_json() -> None:
    plan = TracingPlan(
        apis=frozenset({"torch.optim.Optimizer.step"}),
        state_points=(("torch.optim.Optimizer.step", "pre", False),),
        grad_states=False,
        modules_to_instr=("torch.nn.functional",),
        models_to_track=("Net",),
        sampling_interval=3,
        warm_up_steps=2,
        module_depth=2,
        module_classes=frozenset({"Dropout"}),
    )
    assert plan_from_json(json.loads(json.dumps(plan.to_json()))) == plan
    assert plan_from_json(TracingPlan().to_json()) == TracingPlan()


@pytest.mark.parametrize(
    "field, value",
    [
        ("apis", "torch"),
        ("sampling_interval", 0),
        ("param_digests", 1),
        ("format_version", 9),
        ("state_points", [{"api": "x", "phase": "during", "digest": False}]),
        ("module_depth", -1),
        ("module_classes", "Dropout"),
    ],
)
def test_malformed_plan_is_rejected(field: str, value: object) -> None:
    with pytest.raises(ValueError):
        plan_from_json({**TracingPlan().to_json(), field: value})


def test_sampling_records_warm_up_then_every_nth_step() -> None:
    plan = TracingPlan(sampling_interval=3, warm_up_steps=2)
    assert [s for s in range(10) if plan.records_step(s)] == [0, 1, 2, 5, 8]


def test_models_to_track_matches_name_prefixes() -> None:
    plan = TracingPlan(models_to_track=("Net",))
    assert plan.tracks("Net.fc1.weight") and plan.tracks("Net[1].fc1.weight")
    assert not plan.tracks("Network.fc1.weight")


def _about_submodules(precondition: Precondition | None, *, first: bool = True) -> Invariant[Any]:
    sub = APIParam(SUBMODULE_CALL)
    params = (sub, APIParam("torch.nn.Module.__call__"))
    return make_invariant(
        "APIContainRelation",
        params if first else params[::-1],
        precondition,
        group="g",
        text_description=f"sub-module {precondition} {first}",
        num_positive_examples=3,
        num_negative_examples=0,
    )


def _module_is(*classes: str) -> Precondition:
    return Precondition(tuple((Clause("constant", "args.module", "str", (c,)),) for c in classes))


def test_sub_module_calls_are_traced_only_for_the_classes_invariants_name() -> None:
    dropout = _about_submodules(_module_is("Dropout", "LayerNorm"))
    assert tracing_plan(InvariantSet((dropout,))).module_classes == {"Dropout", "LayerNorm"}
    assert tracing_plan(_invariants()).module_classes == frozenset()
    # An invariant that reads every class's calls, or names the class of another
    # call (the parent's), needs every class.
    for other in (_about_submodules(None), _about_submodules(_module_is("MLP"), first=False)):
        plan = tracing_plan(InvariantSet((dropout, other)))
        assert plan.module_classes is None and plan.traces(SUBMODULE_CALL)
