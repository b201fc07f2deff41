"""Offline ``traincheck-check`` and ``traincheck-infer`` read a trace in bounded memory:
the peak resident memory of the real CLI grows by a window and a batch, not by the
trace (issue 11, item 14)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli

from traincheck.events import SCHEMA_VERSION, ApiCall, ApiReturn, Batch
from traincheck.records import MANIFEST_FORMAT, MANIFEST_VERSION, RunManifest
from traincheck.sidecar.store import TraceWriter
from traincheck.tracedir import TraceDir
from traincheck.wire import encode_batch

MIB = 1024 * 1024
BIG_TRACE_BYTES = 64 * MIB
SOURCE_BYTES = 256 * 1024
"""Each step's ``Optimizer.step`` call carries a 256 KiB source line: 64 MiB of trace in
256 batches, so the test measures holding the trace, not the time to check events."""

ZERO_GRAD = "torch.optim.Optimizer.zero_grad"
STEP = "torch.optim.Optimizer.step"

_MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, timeout=110)\n"
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)
"""Runs a command and prints its exit code and peak resident memory (KiB on Linux):
a process of its own, so the children of other tests do not count."""


def _peak_rss_mib(args: list[str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    code, kib = out.split()
    assert code in ("0", "1"), out  # 1: traincheck-check found violations
    return int(kib) / 1024


def _step_batch(step: int, source: str) -> bytes:
    events = [
        ApiCall(1, 2 * step + 1, 0, 1, ZERO_GRAD, step, "train"),
        ApiReturn(2, 2 * step + 1, 1, ZERO_GRAD, step, "train"),
        ApiCall(3, 2 * step + 2, 0, 1, STEP, step, "train", source=source),
        ApiReturn(4, 2 * step + 2, 1, STEP, step, "train"),
    ]
    return encode_batch(Batch(SCHEMA_VERSION, "run-test", 4242, 0, step, 0, events))


def _write_trace(trace_dir: Path, total_bytes: int) -> Path:
    trace_dir.mkdir()
    TraceDir(trace_dir).write_manifest(
        RunManifest(
            format=MANIFEST_FORMAT,
            format_version=MANIFEST_VERSION,
            run_id="run-test",
            command=["python", "train.py"],
            started_wall_ns=1,
            status="finished",
            sidecar_pid=1,
            hostname="host",
            endpoint="ipc:///nowhere/events.sock",
            invariants=None,
        )
    )
    writer = TraceWriter(trace_dir)
    source = "train.py:12 " + "#" * SOURCE_BYTES
    step = 0
    while writer.bytes_written < total_bytes:
        assert writer.append(_step_batch(step, source)) is not None
        step += 1
    writer.close()
    return trace_dir


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A small trace, a 64 MiB one of the same steps, and invariants inferred from
    the small one."""
    root = tmp_path_factory.mktemp("memory")
    small = _write_trace(root / "small", 8 * SOURCE_BYTES)
    big = _write_trace(root / "big", BIG_TRACE_BYTES)
    invariants = root / "invariants.json"
    subprocess.run(
        [cli("traincheck-infer"), "-f", str(small), "-o", str(invariants)],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return small, big, invariants


@pytest.mark.parametrize("tool", ["traincheck-check", "traincheck-infer"])
def test_a_64_mib_trace_costs_a_window_not_the_trace(
    tool: str, traces: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Holding the trace costs at least its 64 MiB (the bytes, then as many again
    decoded); reading it as a stream costs a 1 MiB window and one batch."""
    small, big, invariants = traces

    def args(trace: Path, name: str) -> list[str]:
        out = tmp_path / name
        if tool == "traincheck-check":
            return [cli(tool), "-f", str(trace), "-i", str(invariants), "-o", str(out)]
        return [cli(tool), "-f", str(trace), "-o", str(out)]

    baseline = _peak_rss_mib(args(small, "small"))
    peak = _peak_rss_mib(args(big, "big"))
    assert peak - baseline < BIG_TRACE_BYTES / MIB / 4, (baseline, peak)


def test_a_1_gib_foreign_segment_costs_its_7_byte_header(
    traces: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A segment file whose magic is wrong is skipped after its first 7 bytes, not read
    whole (a sparse 1 GiB file: no disk space, but 1 GiB of memory if read)."""
    small, _, invariants = traces
    damaged = tmp_path / "trace"
    shutil.copytree(small, damaged)
    with (damaged / "segment-00001.tcs").open("wb") as handle:
        handle.write(b"TCSEG0\n")
        handle.truncate(1024 * MIB)

    def args(trace: Path, name: str) -> list[str]:
        out = str(tmp_path / name)
        return [cli("traincheck-check"), "-f", str(trace), "-i", str(invariants), "-o", out]

    baseline = _peak_rss_mib(args(small, "small"))
    peak = _peak_rss_mib(args(damaged, "damaged"))
    assert peak - baseline < 16, (baseline, peak)
