"""Law: feeding a stored trace event by event to the sidecar's live checker yields
exactly the violations (and result files) of ``traincheck-check`` on that trace."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tracegen import MODEL_PARAMS, LoopSpec, write_trace

from traincheck.analysis.invariants_file import load_invariants
from traincheck.cli.check import main as check_main
from traincheck.cli.infer import main as infer_main
from traincheck.sidecar.live_check import LiveCheck
from traincheck.sidecar.store import read_trace
from traincheck.tracedir import TraceDir
from traincheck.tracing_plan import TracingPlan

COMPARED = ("failed.log", "passed.log", "not_triggered.log", "uncheckable.log")


@functools.cache
def invariants_file() -> Path:
    root = Path(tempfile.mkdtemp(prefix="tc-prop-"))
    a = write_trace(root / "a", LoopSpec(steps=20, seed=1, eval_every=5))
    b = write_trace(root / "b", LoopSpec(steps=12, seed=2, eval_every=4))
    out = root / "invariants.json"
    assert infer_main(["-f", str(a), str(b), "-o", str(out)]) == 0
    return out


specs = st.builds(
    LoopSpec,
    steps=st.integers(1, 12),
    seed=st.integers(0, 10_000),
    zero_grad=st.booleans(),
    set_to_none=st.booleans(),
    stale_optimizer=st.booleans(),
    eval_every=st.sampled_from([0, 3, 5]),
    frozen=st.sampled_from([(), MODEL_PARAMS[:1]]),
    eval_left_on=st.booleans(),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs)
def test_live_equals_offline(spec: LoopSpec) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        trace = write_trace(root / "trace", spec)
        live_trace, offline_dir = TraceDir(root / "live"), root / "offline"
        live_dir = live_trace.live_results
        live = LiveCheck(load_invariants(invariants_file()), live_trace, TracingPlan())
        for stored in read_trace(trace).events():
            live.feed(stored)
        live.finish()
        code = check_main(["-f", str(trace), "-i", str(invariants_file()), "-o", str(offline_dir)])
        assert live.errors == 0
        assert code == (1 if live.violations else 0)
        for name in COMPARED:
            assert (live_dir / name).read_text() == (offline_dir / name).read_text(), name
        # The same verdict, findings included; only the description of the run (the
        # trace path the results sit beside, the manifest) differs by nature.
        live_summary, offline_summary = (
            json.loads((d / "violations_summary.json").read_text()) for d in (live_dir, offline_dir)
        )
        assert live_summary.pop("run") and offline_summary.pop("run")
        assert live_summary == offline_summary
