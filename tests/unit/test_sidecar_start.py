"""A run parses its invariants file once, in the sidecar, before the job starts: the
same parse feeds the live check and the selective tracing plan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_plan import _invariants

from traincheck.analysis import invariants_file
from traincheck.analysis.instrumentation import tracing_plan
from traincheck.analysis.invariants_file import dump_invariants
from traincheck.errors import InvariantsFileError, UserError
from traincheck.sidecar.run_plan import decide_plan, read_base_plan
from traincheck.sidecar.service import SidecarOptions, start
from traincheck.tracedir import TraceDir
from traincheck.tracing_plan import TracingPlan, load_plan, write_plan_file


@pytest.fixture
def invariants(tmp_path: Path) -> Path:
    path = tmp_path / "inv.json"
    dump_invariants(_invariants(), path)
    return path


def _options(tmp_path: Path, invariants: Path | None, **kwargs: object) -> SidecarOptions:
    sock = tmp_path / "run"
    sock.mkdir(mode=0o700, exist_ok=True)
    return SidecarOptions(
        trace_dir=tmp_path / "trace",
        endpoint=f"ipc://{sock}/events.sock",
        run_id="r",
        invariants=invariants,
        **kwargs,  # type: ignore[arg-type]
    )


def test_one_parse_serves_the_live_check_and_the_selective_plan(
    tmp_path: Path, invariants: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parses = []
    real = invariants_file.load_invariants
    monkeypatch.setattr(
        invariants_file, "load_invariants", lambda path: parses.append(path) or real(path)
    )
    plan_file = tmp_path / "run" / "plan.json"
    plan_file.parent.mkdir(mode=0o700)
    write_plan_file(plan_file, TracingPlan(sampling_interval=3, modules_to_instr=("mylib",)))
    sidecar = start(_options(tmp_path, invariants, plan_file=plan_file, selective=True))
    try:
        assert parses == [invariants]
        assert sidecar.check.active
        expected = tracing_plan(_invariants(), modules_to_instr=("mylib",), sampling_interval=3)
        assert load_plan(plan_file) == expected  # what the tracer will read
        trace = TraceDir(tmp_path / "trace")
        assert trace.recorded_plan() == expected  # what later checks will read
        assert trace.read_manifest().status == "running"
    finally:
        sidecar.finish()


def test_without_selective_the_launchers_plan_is_recorded_as_is(tmp_path: Path) -> None:
    sidecar = start(_options(tmp_path, None))
    try:
        assert not sidecar.check.active
        assert TraceDir(tmp_path / "trace").recorded_plan() == TracingPlan()
    finally:
        sidecar.finish()


def test_a_malformed_file_stops_the_start_before_anything_is_written(tmp_path: Path) -> None:
    bad = tmp_path / "inv.json"
    bad.write_text('{"format": "something-else"}')
    with pytest.raises(InvariantsFileError, match=r"inv\.json"):
        start(_options(tmp_path, bad))
    assert not (tmp_path / "trace").exists()
    assert not (tmp_path / "run" / "events.sock").exists()


def test_plan_decisions(tmp_path: Path) -> None:
    base = TracingPlan(warm_up_steps=2)
    assert decide_plan(base, None, selective=False) is base
    with pytest.raises(UserError, match="needs --invariants"):
        decide_plan(base, None, selective=True)
    assert decide_plan(base, _invariants(), selective=True).warm_up_steps == 2
    assert read_base_plan(None) == TracingPlan()
    (tmp_path / "p.json").write_text("[]")
    with pytest.raises(UserError, match=r"p\.json"):
        read_base_plan(tmp_path / "p.json")


def test_the_launcher_never_loads_the_analysis_package() -> None:
    code = (
        "import sys, traincheck.launcher.cli, traincheck.launcher.collect; "
        "print(sorted(m for m in sys.modules if m.startswith(('traincheck.analysis', "
        "'traincheck.sidecar'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
