"""Import-time cost of the tracer's hooks, measured interleaved in one run.

A job started under ``traincheck-run`` imports the tracer through
``sitecustomize`` and patches torch (and the stacks' optimizer wrappers) as
their modules are imported. What that costs before the first training step is
the time from the process's start to the end of its imports: this script runs
``python -c "import torch[, transformers, ...]"`` with a probe that prints that
time, untraced and under ``traincheck-run``, one after the other in every round,
and prints the medians and their difference (what a user waits longer).

    .venv/bin/python scripts/bench/import_cost.py --rounds 5
    .venv/bin/python scripts/bench/import_cost.py --rounds 5 --modules torch transformers lightning
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
PROBE = """
import sys, time, psutil
started = psutil.Process().create_time()
for name in sys.argv[1:]:
    __import__(name)
print(f"imports_done_s {{time.time() - started:.6f}}")
"""
DONE = re.compile(r"imports_done_s (\S+)")


def _seconds(cmd: list[str]) -> float:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    found = DONE.search(result.stdout)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"{cmd[0]} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--modules", nargs="+", default=["torch"])
    args = parser.parse_args()
    missing = [m for m in args.modules if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"not installed here: {', '.join(missing)}")
    probe = [str(BIN / "python"), "-c", PROBE.format(), *args.modules]
    untraced: list[float] = []
    traced: list[float] = []
    with tempfile.TemporaryDirectory(prefix="tc-import-") as work:
        for index in range(args.rounds):
            untraced.append(_seconds(probe))
            out = Path(work) / f"run{index}"
            traced.append(
                _seconds([str(BIN / "traincheck-run"), "--output-dir", str(out), "--", *probe])
            )
            print(f"round {index + 1}/{args.rounds} done", file=sys.stderr)
    plain, ours = statistics.median(untraced), statistics.median(traced)
    print(f"imports: {' '.join(args.modules)}; {args.rounds} interleaved rounds")
    print("process start to end of imports, median (min-max):")
    print(f"  untraced                {plain:.3f} s ({min(untraced):.3f}-{max(untraced):.3f})")
    print(f"  traincheck-run          {ours:.3f} s ({min(traced):.3f}-{max(traced):.3f})")
    print(f"  cost of our hooks       {ours - plain:+.3f} s ({ours / plain:.2f}x)")


if __name__ == "__main__":
    main()
