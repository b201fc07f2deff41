"""The tracer inside a real training process, publishing to a real PULL socket.

Each test runs ``scripts/tracer_mlp.py`` in a subprocess with our bootstrap on
``PYTHONPATH`` (exactly as the launcher does) and decodes what arrives.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zmq

from traincheck.events import (
    ApiCall,
    Batch,
    Event,
    MetaChange,
    RunEnd,
    RunStart,
    VarState,
    single_events,
)
from traincheck.wire import decode_batch

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "traincheck" / "bootstrap"
SCRIPT = Path(__file__).parent / "scripts" / "tracer_mlp.py"
RUN_ID = "tracer-test"
TRACED_APIS = {
    "torch.optim.Optimizer.step",
    "torch.optim.Optimizer.zero_grad",
    "torch.nn.Module.zero_grad",
    "torch.Tensor.backward",
    "torch.autograd.backward",
    "torch.nn.Module.__call__",
    "torch.nn.Module.eval",
    "torch.utils.data.DataLoader.__iter__",
    "torch.nn.Module.forward",  # fc1, fc2 inside Net
    "torch.nn.functional.cross_entropy",
    "torch.utils.data.DataLoader.__next__",
    "torch.utils.data.Sampler.__iter__",
}


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    batches: list[Batch] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return int(self.stdout.split("pid ", 1)[1].split()[0])

    @property
    def losses(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith("loss ")]

    @property
    def events(self) -> list[Event]:
        return [event for batch in self.batches for event in single_events(batch.events)]


@pytest.fixture
def pull(tmp_path: Path) -> Iterator[tuple[str, zmq.Socket[bytes]]]:
    endpoint = f"ipc://{tmp_path}/sidecar.sock"
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = context.socket(zmq.PULL)
    sock.bind(endpoint)
    yield endpoint, sock
    sock.close(linger=0)
    context.term()


def _env(endpoint: str | None, trace_dir: Path, extra_path: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BOOTSTRAP), extra_path) if p)
    env["TRAINCHECK_TRACE_DIR"] = str(trace_dir)
    env["TRAINCHECK_RUN_ID"] = RUN_ID
    if endpoint is not None:
        env["TRAINCHECK_ENDPOINT"] = endpoint
    return env


def _run(env: dict[str, str], *args: str) -> Run:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def _receive(sock: zmq.Socket[bytes], run: Run, timeout_s: float = 10.0) -> None:
    """Collect batches until the main process's RunEnd arrived (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not sock.poll(200):
            if any(isinstance(e, RunEnd) for e in run.events):
                return
            continue
        run.batches.append(decode_batch(sock.recv(), expected_run_id=RUN_ID))


def _traced(pull: tuple[str, zmq.Socket[bytes]], tmp_path: Path, *args: str) -> Run:
    endpoint, sock = pull
    run = _run(_env(endpoint, tmp_path), *args)
    assert run.returncode == 0, run.stderr
    _receive(sock, run)
    return run


def test_trace_of_a_training_run(pull: tuple[str, zmq.Socket[bytes]], tmp_path: Path) -> None:
    run = _traced(pull, tmp_path, "--workers", "2")
    events = run.events
    assert "traincheck:" not in run.stderr
    assert {batch.pid for batch in run.batches} == {run.pid}, "a DataLoader worker sent events"
    assert [b.seq for b in run.batches] == list(range(len(run.batches)))
    assert isinstance(events[0], RunStart) and events[0].pid == run.pid
    assert isinstance(events[-1], RunEnd) and events[-1].events_dropped == 0
    calls = {e.call_id: e for e in events if isinstance(e, ApiCall)}
    assert {c.api for c in calls.values()} == TRACED_APIS

    steps = [c for c in calls.values() if c.api == "torch.optim.Optimizer.step"]
    assert [c.step for c in steps] == [0, 1, 2, 3, 4]
    for call in steps:
        states = [e for e in events if isinstance(e, VarState) and e.call_id == call.call_id]
        pre = {s.var_name: s for s in states if s.phase == "pre"}
        post = {s.var_name: s for s in states if s.phase == "post"}
        assert (
            set(pre)
            == set(post)
            == {"Net.fc1.weight", "Net.fc1.bias", "Net.fc2.weight", "Net.fc2.bias"}
        )
        assert all(pre[n].digest != post[n].digest for n in pre)
        assert all(s.grad == "nonzero" and s.var_type == "torch.nn.Parameter" for s in states)

    zero_grads = [c for c in calls.values() if c.api == "torch.optim.Optimizer.zero_grad"]
    for call in zero_grads[1:]:
        states = [e for e in events if isinstance(e, VarState) and e.call_id == call.call_id]
        assert {s.grad for s in states if s.phase == "pre"} == {"nonzero"}
        assert {s.grad for s in states if s.phase == "post"} == {"none"}
        assert all(s.digest is None for s in states)

    step_changes = [e.value for e in events if isinstance(e, MetaChange) and e.key == "step"]
    assert step_changes == [1, 2, 3, 4, 5]
    stages = [e.value for e in events if isinstance(e, MetaChange) and e.key == "stage"]
    assert stages == ["train", "eval"]

    for call in calls.values():
        if call.api == "torch.autograd.backward":
            assert calls[call.parent_id].api == "torch.Tensor.backward"
        elif call.api == "torch.nn.Module.__call__":
            assert call.parent_id == 0
    module_calls = [c for c in calls.values() if c.api == "torch.nn.Module.__call__"]
    assert [(c.args[0].value, c.args[1].value) for c in module_calls] == [("Net", True)] * 5 + [
        ("Net", False)
    ]


def test_tracing_does_not_change_the_losses(
    pull: tuple[str, zmq.Socket[bytes]], tmp_path: Path
) -> None:
    traced = _traced(pull, tmp_path)
    plain = _run(_env(None, tmp_path))
    assert plain.returncode == 0, plain.stderr
    assert len(traced.losses) == 5
    assert traced.losses == plain.losses


def test_spawned_dataloader_workers_send_nothing(
    pull: tuple[str, zmq.Socket[bytes]], tmp_path: Path
) -> None:
    run = _traced(pull, tmp_path, "--workers", "2", "--start-method", "spawn", "--steps", "3")
    assert {batch.pid for batch in run.batches} == {run.pid}
    assert sum(isinstance(e, RunStart) for e in run.events) == 1
    assert sorted(p.name for p in tmp_path.glob("tracer-*.json")) == [f"tracer-{run.pid}.json"]


def test_user_sitecustomize_still_runs(pull: tuple[str, zmq.Socket[bytes]], tmp_path: Path) -> None:
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "sitecustomize.py").write_text("print('user-sitecustomize-ran', flush=True)\n")
    endpoint, sock = pull
    run = _run(_env(endpoint, tmp_path, extra_path=str(user_dir)), "--steps", "1")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("user-sitecustomize-ran\n")
    _receive(sock, run)
    assert any(isinstance(e, RunStart) for e in run.events)


def test_absent_sidecar_costs_nothing_and_drops_are_counted(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/nobody-listens.sock"
    run = _run(_env(endpoint, tmp_path))  # a tracer that waited for a peer would hang: 90 s
    assert run.returncode == 0, run.stderr
    assert len(run.losses) == 5
    counters_file = tmp_path / f"tracer-{run.pid}.json"
    counters = json.loads(counters_file.read_text())
    assert counters["pid"] == run.pid and counters["rank"] == 0
    assert counters["events_sent"] == 0
    assert counters["events_dropped"] > 0 and counters["batches_dropped"] > 0
    assert stat.S_IMODE(counters_file.stat().st_mode) == 0o600


def test_without_endpoint_nothing_is_armed(tmp_path: Path) -> None:
    run = _run(_env(None, tmp_path), "--steps", "1")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert list(tmp_path.glob("tracer-*.json")) == []
