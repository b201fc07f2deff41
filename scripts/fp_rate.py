#!/usr/bin/env python3
"""False-positive rate of inferred invariants on healthy variants of the bundled examples.

For every pipeline in ``examples/silent_bugs/<bug>/``: trace two healthy runs
(seeds 1 and 2), infer invariants from both, then trace healthy *variants* (another
seed, another batch size, another learning rate) and check each against the
invariants. A variant with any violation is a false positive; the rate is
false positives / variants checked. With ``--bugs`` the buggy pipeline is traced
and checked too, so the same run shows that the guards did not cost detection.

Everything goes through the installed CLIs (``traincheck-run``, ``traincheck-infer``,
``traincheck-check``) as real processes. Output: one line per example, then the
rate; ``--json FILE`` writes the figures. Exit code 1 when the rate is not 0 (or
a bug went undetected with ``--bugs``).

    .venv/bin/python scripts/fp_rate.py --bugs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "silent_bugs"
BIN = Path(sys.executable).parent
TRAIN_SEEDS = (1, 2)
VARIANTS: dict[str, tuple[str, ...]] = {
    "seed3": ("--seed", "3"),
    "batch16": ("--seed", "4", "--batch-size", "16"),
    "lr0.02": ("--seed", "5", "--lr", "0.02"),
}


@dataclass
class ExampleResult:
    example: str
    invariants: int = 0
    variant_violations: dict[str, int] = field(default_factory=dict)
    fired: dict[str, list[str]] = field(default_factory=dict)
    bug_violations: int | None = None
    bug_relations: list[str] = field(default_factory=list)
    error: str | None = None


def _run(args: list[str], timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)


REUSE_TRACES = False
"""``--reuse-traces``: keep a trace directory that already exists (re-infer and re-check only)."""


def _trace(script: Path, out: Path, steps: int, extra: tuple[str, ...]) -> None:
    if REUSE_TRACES and (out / "run.json").is_file():
        return
    cmd = [str(BIN / "traincheck-run"), "--output-dir", str(out), "--"]
    cmd += [sys.executable, str(script), "--steps", str(steps), *extra]
    result = _run(cmd)
    if result.returncode != 0:
        raise RuntimeError(f"tracing {script.parent.name}/{script.name} failed: {result.stderr}")


def _check(trace: Path, invariants: Path, out: Path) -> tuple[int, list[str], list[str]]:
    """Violations, ids and relations of the invariants that fired."""
    cmd = [str(BIN / "traincheck-check"), "-f", str(trace), "-i", str(invariants)]
    result = _run([*cmd, "-o", str(out)])
    if result.returncode not in (0, 1):
        raise RuntimeError(f"checking {trace} failed: {result.stderr}")
    summary = json.loads((out / "violations_summary.json").read_text())
    violated = summary.get("violations", [])
    fired = [f"{v['relation_type']}: {v['display_name']}" for v in violated]
    relations = sorted({v["relation_type"] for v in violated})
    return int(summary.get("total_violations", 0)), fired, relations


def evaluate(example: Path, work: Path, steps: int, bugs: bool) -> ExampleResult:
    result = ExampleResult(example.name)
    try:
        healthy = example / "healthy.py"
        traces = []
        for seed in TRAIN_SEEDS:
            traces.append(work / f"healthy-seed{seed}")
            _trace(healthy, traces[-1], steps, ("--seed", str(seed)))
        invariants = work / "invariants.json"
        infer = [str(BIN / "traincheck-infer"), "-f", *map(str, traces), "-o", str(invariants)]
        done = _run(infer)
        if done.returncode != 0:
            raise RuntimeError(f"inference failed: {done.stderr}")
        result.invariants = len(json.loads(invariants.read_text())["invariants"])
        for name, extra in VARIANTS.items():
            trace = work / f"variant-{name}"
            _trace(healthy, trace, steps, extra)
            count, fired, _ = _check(trace, invariants, work / f"check-{name}")
            result.variant_violations[name] = count
            if fired:
                result.fired[name] = fired
        if bugs:
            trace = work / "buggy"
            _trace(example / "buggy.py", trace, steps, ("--seed", "3"))
            count, _, relations = _check(trace, invariants, work / "check-buggy")
            result.bug_violations, result.bug_relations = count, relations
    except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as exc:
        result.error = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per traced run")
    parser.add_argument("--bugs", action="store_true", help="also check each buggy pipeline")
    parser.add_argument("--examples", nargs="+", default=None, help="only these examples")
    parser.add_argument("--jobs", type=int, default=2, help="examples processed in parallel")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep traces here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "--reuse-traces", action="store_true", help="with --work-dir: keep existing traces"
    )
    args = parser.parse_args(argv)
    global REUSE_TRACES
    REUSE_TRACES = args.reuse_traces
    names = args.examples or sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())
    with tempfile.TemporaryDirectory(prefix="tc-fp-") as tmp:
        work = args.work_dir or Path(tmp)
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [
                pool.submit(evaluate, EXAMPLES / n, work / n, args.steps, args.bugs) for n in names
            ]
            results = [f.result() for f in futures]
    return _report(results, args)


def _report(results: list[ExampleResult], args: argparse.Namespace) -> int:
    checked = flagged = missed = 0
    for r in results:
        if r.error:
            print(f"{r.example:24} ERROR {r.error}")
            continue
        variants = " ".join(f"{k}={v}" for k, v in r.variant_violations.items())
        line = f"{r.example:24} {r.invariants:4d} invariants  healthy variants: {variants}"
        if r.bug_violations is not None:
            line += f"  buggy: {r.bug_violations} ({', '.join(r.bug_relations) or 'MISSED'})"
            missed += r.bug_violations == 0
        print(line)
        for name, fired in r.fired.items():
            for text in fired:
                print(f"    {name} fired: {text}")
        checked += len(r.variant_violations)
        flagged += sum(1 for v in r.variant_violations.values() if v)
    rate = flagged / checked if checked else float("nan")
    print(f"false-positive rate: {flagged}/{checked} healthy variants flagged = {rate:.3f}")
    if args.bugs:
        print(f"bugs detected: {len(results) - missed}/{len(results)}")
    if args.json:
        figures = {"rate": rate, "flagged": flagged, "checked": checked}
        figures["examples"] = [asdict(r) for r in results]  # type: ignore[assignment]
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    errors = any(r.error for r in results)
    return 1 if flagged or missed or errors else 0


if __name__ == "__main__":
    sys.exit(main())
