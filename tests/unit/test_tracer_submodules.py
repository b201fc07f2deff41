"""Sub-module calls: every module call below the outermost one, with its qualified name.

The hooks run in this process against ``ListRecorder`` (tests/unit/listrecorder.py),
on real torch modules.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from listrecorder import Call, ListRecorder

from traincheck.catalogue import MODULE_CALL, SUBMODULE_CALL
from traincheck.tracer.hooks import TorchHooks
from traincheck.tracer.models import unwrap_model
from traincheck.tracing_plan import TracingPlan


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = torch.nn.Linear(8, 8)
        self.drop = torch.nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.attn(x))


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block1 = Block()
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block1(x))


def traced(plan: TracingPlan) -> Iterator[ListRecorder]:
    recorder = ListRecorder(plan=plan)
    hooks = TorchHooks(recorder)
    hooks.install()
    try:
        yield recorder
    finally:
        hooks.uninstall()


@pytest.fixture
def recorder() -> Iterator[ListRecorder]:
    yield from traced(TracingPlan(param_digests=False, grad_states=False))


def names(calls: list[Call]) -> list[str]:
    return [str(c.args["name"].value) for c in calls]


def test_every_depth_is_traced_with_qualified_name_mode_and_tensors(
    recorder: ListRecorder,
) -> None:
    model = MLP()
    model.block1.drop.eval()  # one sub-layer left in eval mode: visible per layer
    model(torch.zeros(4, 8))

    assert len(recorder.of(MODULE_CALL)) == 1
    subs = recorder.of(SUBMODULE_CALL)
    assert names(subs) == ["MLP.block1", "MLP.block1.attn", "MLP.block1.drop", "MLP.head"]
    assert [c.depth for c in subs] == [1, 2, 2, 1]
    assert [c.args["module"].value for c in subs] == ["Block", "Linear", "Dropout", "Linear"]
    training = {str(c.args["name"].value): c.args["training"].value for c in subs}
    assert training == {
        "MLP.block1": True,
        "MLP.block1.attn": True,
        "MLP.block1.drop": False,
        "MLP.head": True,
    }
    head = subs[-1]
    assert (head.args["input"].shape, head.args["input"].dtype) == ((4, 8), "torch.float32")
    assert head.result is not None
    assert (head.result.shape, head.result.dtype, head.result.device) == (
        (4, 2),
        "torch.float32",
        "cpu",
    )
    assert recorder.errors == []


def test_a_sub_layer_in_another_dtype_shows_in_its_output(recorder: ListRecorder) -> None:
    model = MLP()
    model.block1.attn.double()
    model.block1(torch.zeros(2, 8, dtype=torch.float64))  # names still from the whole model
    attn = [c for c in recorder.of(SUBMODULE_CALL) if c.args["name"].value == "MLP.block1.attn"]
    assert len(attn) == 1 and attn[0].result is not None
    assert attn[0].result.dtype == "torch.float64"


def test_names_leave_out_data_parallel_and_compile_wrappers(recorder: ListRecorder) -> None:
    inner = MLP()
    wrapped = torch.nn.DataParallel(inner)  # CPU only: DataParallel calls the module itself
    assert unwrap_model(wrapped) is inner
    wrapped(torch.zeros(2, 8))
    assert "MLP.block1.attn" in names(recorder.of(SUBMODULE_CALL))
    assert all(not n.startswith("DataParallel") for n in names(recorder.of(SUBMODULE_CALL)))


def test_depth_and_classes_limit_what_is_traced() -> None:
    for recorder in traced(TracingPlan(grad_states=False, param_digests=False, module_depth=1)):
        MLP()(torch.zeros(2, 8))
        assert names(recorder.of(SUBMODULE_CALL)) == ["MLP.block1", "MLP.head"]
    plan = TracingPlan(
        grad_states=False, param_digests=False, module_classes=frozenset({"Dropout"})
    )
    for recorder in traced(plan):
        MLP()(torch.zeros(2, 8))
        assert names(recorder.of(SUBMODULE_CALL)) == ["MLP.block1.drop"]
    for recorder in traced(TracingPlan(apis=frozenset({MODULE_CALL}))):
        MLP()(torch.zeros(2, 8))
        assert recorder.of(SUBMODULE_CALL) == []
        assert len(recorder.of(MODULE_CALL)) == 1


def test_an_exception_in_a_sub_layer_passes_through_and_closes_the_calls(
    recorder: ListRecorder,
) -> None:
    model = MLP()
    with pytest.raises(RuntimeError):
        model(torch.zeros(2, 5))  # wrong width: the first Linear raises
    assert [c.exception for c in recorder.of(SUBMODULE_CALL)] == ["RuntimeError", "RuntimeError"]
    assert recorder.of(MODULE_CALL)[0].exception == "RuntimeError"
    model(torch.zeros(2, 8))  # depth was restored: the next call is outermost again
    assert recorder.of(MODULE_CALL)[-1].depth == 0


def test_outputs_are_identical_with_and_without_sub_module_tracing() -> None:
    torch.manual_seed(0)
    model = MLP().eval()
    x = torch.randn(3, 8)
    expected = model(x)
    for _ in traced(TracingPlan()):
        assert torch.equal(model(x), expected)


def test_a_compiled_model_reports_its_outermost_call_only(recorder: ListRecorder) -> None:
    """Inside a graph dynamo compiles, the wrapper steps aside (no event, no graph break)."""
    torch.manual_seed(0)
    model = MLP().eval()
    x = torch.randn(3, 8)
    expected = model(x)
    recorder.calls.clear()
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # a break would raise
    assert torch.equal(compiled(x), expected)
    assert len(recorder.of(MODULE_CALL)) == 1
    assert recorder.of(SUBMODULE_CALL) == []
    assert recorder.errors == []
