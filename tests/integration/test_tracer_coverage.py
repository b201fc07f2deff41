"""The tracer's API and state coverage, end to end through traincheck-run."""

from __future__ import annotations

import pytest
from conftest import SCRIPTS, cli, python_cmd, run_cli

from traincheck.events import ApiCall, ApiReturn, MetaChange, VarState
from traincheck.sidecar.store import read_trace


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> list[object]:
    out = tmp_path_factory.mktemp("coverage") / "trace"
    result = run_cli(
        [cli("traincheck-run"), "-o", str(out), "--", *python_cmd(SCRIPTS / "tracer_coverage.py")]
    )
    assert result.returncode == 0, result.stderr
    return [stored.event for stored in read_trace(out).events()]


def _calls(events: list[object], api: str) -> list[ApiCall]:
    return [e for e in events if isinstance(e, ApiCall) and e.api == api]


def _args(call: ApiCall) -> dict[str, object]:
    return {a.name: a.value for a in call.args}


def test_targeted_apis_are_traced_with_canonical_names(events: list[object]) -> None:
    assert len(_calls(events, "torch.nn.utils.clip_grad_norm_")) == 4
    assert len(_calls(events, "torch.utils.data.DataLoader.__iter__")) == 2
    schedulers = _calls(events, "torch.optim.lr_scheduler.LRScheduler.step")
    assert {_args(c)["scheduler"] for c in schedulers} == {"StepLR"}
    for api in ("train", "eval", "to", "load_state_dict"):
        assert len(_calls(events, f"torch.nn.Module.{api}")) == 1, api


def test_optimizer_step_carries_lr_and_momentum(events: list[object]) -> None:
    lrs = [_args(c)["lr"] for c in _calls(events, "torch.optim.Optimizer.step")]
    assert lrs == [0.1, 0.1, 0.05, 0.05]
    assert _args(_calls(events, "torch.optim.Optimizer.step")[0])["momentum"] == 0.9


def test_autocast_and_annotations_are_meta_variables(events: list[object]) -> None:
    metas = [(e.key, e.value) for e in events if isinstance(e, MetaChange)]
    assert ("autocast", "torch.bfloat16") in metas and ("autocast", None) in metas
    assert ("phase", "fwd") in metas and ("epoch", 1) in metas
    forward = _calls(events, "torch.nn.Module.__call__")[0]
    result = next(
        e.result for e in events if isinstance(e, ApiReturn) and e.call_id == forward.call_id
    )
    assert result is not None and result.dtype == "torch.bfloat16"


def test_batchnorm_running_stats_change_across_training_forward(events: list[object]) -> None:
    forward = _calls(events, "torch.nn.Module.__call__")[0]
    states = [
        e
        for e in events
        if isinstance(e, VarState)
        and e.call_id == forward.call_id
        and e.var_name.endswith("running_mean")
    ]
    assert [s.phase for s in states] == ["pre", "post"]
    assert states[0].digest != states[1].digest


def test_a_module_call_that_raises_is_closed_and_the_next_one_traced(
    events: list[object],
) -> None:
    """The Module.__call__ wrapper: outermost calls only, the exception recorded on
    the return, and the nesting depth reset so the next call is outermost again."""
    calls = _calls(events, "torch.nn.Module.__call__")
    assert all(call.parent_id == 0 for call in calls)
    assert {_args(call)["module"] for call in calls} == {"Sequential"}
    returns = {e.call_id: e for e in events if isinstance(e, ApiReturn)}
    failed, last = calls[-2], calls[-1]
    assert returns[failed.call_id].exception == "RuntimeError"
    assert returns[last.call_id].exception is None
