#!/usr/bin/env python3
"""Inference speed and memory: ``traincheck-infer`` on 1x, 4x and 16x a ~70-step MLP trace.

Traces ``scripts/bench/workload_mlp.py`` under ``traincheck-run`` at each length
(70, 280, 1120 optimizer steps by default), then times ``traincheck-infer`` on
each trace as a child process: wall time and peak resident memory (the child's
``ru_maxrss`` from ``wait4``). The best of ``--repeat`` runs is reported, with
the per-step cost so near-linear growth is visible. Prints a Markdown table.

    .venv/bin/python scripts/bench/infer_speed.py [--base-steps 70] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SCALES = (1, 4, 16)


def trace_workload(out: Path, steps: int) -> None:
    cmd = [str(BIN / "traincheck-run"), "--output-dir", str(out), "--"]
    cmd += [sys.executable, str(HERE / "workload_mlp.py"), "--steps", str(steps)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=900)


def timed_infer(trace: Path, output: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one ``traincheck-infer`` process."""
    cmd = [str(BIN / "traincheck-infer"), "-f", str(trace), "-o", str(output)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(
            f"traincheck-infer failed: {proc.stderr.read().decode() if proc.stderr else ''}"
        )
    return elapsed, usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-steps", type=int, default=70)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work-dir", type=Path, default=None, help="keep traces here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tc-infer-bench-") as tmp:
        work = args.work_dir or Path(tmp)
        for scale in SCALES:
            steps = args.base_steps * scale
            trace = work / f"mlp-{steps}"
            if not (trace / "run.json").is_file():
                trace_workload(trace, steps)
            runs = [timed_infer(trace, work / f"inv-{steps}.json") for _ in range(args.repeat)]
            wall, rss = min(r[0] for r in runs), max(r[1] for r in runs)
            count = len(json.loads((work / f"inv-{steps}.json").read_text())["invariants"])
            rows.append({"scale": scale, "steps": steps, "wall_s": wall, "peak_rss_mib": rss,
                         "invariants": count, "ms_per_step": 1000 * wall / steps})  # fmt: skip
    print("| trace | steps | infer wall (s) | peak RSS (MiB) | ms / step | invariants |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['scale']}x | {r['steps']} | {r['wall_s']:.2f} | {r['peak_rss_mib']:.0f} "
              f"| {r['ms_per_step']:.2f} | {r['invariants']} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
