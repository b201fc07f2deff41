"""Per-step overhead of tracing, measured interleaved in one run.

Runs the workload (``workload_mlp.py``) untraced, under ``traincheck-run`` (full
tracing; and with live checking against invariants inferred from a first traced
run), and optionally under the published TrainCheck (``--peer``, from the venv
made by ``make_peer_venv.sh``). Every round runs each variant once, in turn, so
machine noise hits all of them alike. Prints, per variant, the median per-step
time after warm-up, its ratio to the untraced run, and the trace size per step.

    .venv/bin/python scripts/bench/overhead.py --rounds 5
    .venv/bin/python scripts/bench/overhead.py --rounds 3 --peer --model cnn
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKLOAD = HERE / "workload_mlp.py"
BIN = Path(sys.executable).parent
PEER_BIN = REPO / ".bench" / "peer-venv" / "bin"
WARMUP_STEPS = 5


STEP_TIME = re.compile(r"steptime_ns (\d+)")


def step_times_ns(stdout: str) -> list[int]:
    """Per-step times printed by the workload (the peer colours its output: search, don't match)."""
    return [int(m.group(1)) for m in STEP_TIME.finditer(stdout)]


def run(cmd: list[str], cwd: Path) -> list[int]:
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    times = step_times_ns(result.stdout)
    if not times:
        raise SystemExit(f"no step times from {cmd}:\n{result.stdout[-1000:]}")
    return times[WARMUP_STEPS:]


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=70)
    parser.add_argument("--model", choices=("mlp", "cnn", "mnist"), default="mlp")
    parser.add_argument("--peer", action="store_true", help="add the published TrainCheck")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tc-bench-"))
    python = [sys.executable, str(WORKLOAD), "--steps", str(args.steps), "--model", args.model]

    reference = work / "reference"
    run([str(BIN / "traincheck-run"), "--output-dir", str(reference), "--", *python], work)
    invariants = work / "invariants.json"
    subprocess.run(
        [str(BIN / "traincheck-infer"), "-f", str(reference), "-o", str(invariants)],
        check=True,
        capture_output=True,
        timeout=600,
    )

    variants: dict[str, callable] = {
        "untraced": lambda r: python,
        "traincheck-run (full tracing)": lambda r: [
            str(BIN / "traincheck-run"),
            "--output-dir",
            str(work / f"full{r}"),
            "--",
            *python,
        ],
        "traincheck-run --module-depth 0 (outermost module call only)": lambda r: [
            str(BIN / "traincheck-run"),
            "--module-depth",
            "0",
            "--output-dir",
            str(work / f"outer{r}"),
            "--",
            *python,
        ],
        "traincheck-run --invariants (live check)": lambda r: [
            str(BIN / "traincheck-run"),
            "--invariants",
            str(invariants),
            "--output-dir",
            str(work / f"check{r}"),
            "--",
            *python,
        ],
        "traincheck-run --invariants --selective": lambda r: [
            str(BIN / "traincheck-run"),
            "--invariants",
            str(invariants),
            "--selective",
            "--output-dir",
            str(work / f"selective{r}"),
            "--",
            *python,
        ],
    }
    if args.peer:
        if not (PEER_BIN / "traincheck-collect").exists():
            raise SystemExit("no peer venv: run scripts/bench/make_peer_venv.sh first")
        # The peer writes an instrumented copy next to the script: give it a copy.
        peer_workload = work / WORKLOAD.name
        # It runs the script without arguments: the copy's defaults are this run's.
        peer_workload.write_text(
            WORKLOAD.read_text()
            .replace('default="mlp"', f'default="{args.model}"')
            .replace(
                '"--steps", type=int, default=70', f'"--steps", type=int, default={args.steps}'
            )
        )
        variants["published TrainCheck 0.2.0 (full)"] = lambda r: [
            str(PEER_BIN / "traincheck-collect"),
            "-p",
            str(peer_workload),
            "--models-to-track",
            "model",
            "--output-dir",
            str(work / f"peer{r}"),
        ]

    medians: dict[str, list[float]] = {name: [] for name in variants}
    pooled: dict[str, list[int]] = {name: [] for name in variants}
    for round_index in range(args.rounds):
        for name, command in variants.items():
            times = run(command(round_index), work)
            medians[name].append(statistics.median(times))
            pooled[name].extend(times)
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)

    sizes = {
        "traincheck-run (full tracing)": dir_bytes(work / "full0"),
        "traincheck-run --module-depth 0 (outermost module call only)": dir_bytes(work / "outer0"),
        "traincheck-run --invariants (live check)": dir_bytes(work / "check0"),
        "traincheck-run --invariants --selective": dir_bytes(work / "selective0"),
    }
    if args.peer:
        sizes["published TrainCheck 0.2.0 (full)"] = dir_bytes(work / "peer0")
    base = medians["untraced"]
    base_pooled = statistics.median(pooled["untraced"])
    print(
        f"workload: {WORKLOAD.name} --model {args.model}, {args.steps} steps,"
        f" {args.rounds} interleaved rounds"
    )
    print("ratio: median step over all rounds / untraced's; rounds: quartiles of the")
    print("per-round ratios (each variant's median step / the same round's untraced)")
    print(
        f"{'variant':45} {'median step':>12} {'ratio':>7} {'rounds q1-q3':>14} {'trace/step':>11}"
    )
    for name, values in medians.items():
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (1.0, 1.0, 1.0)
        step = statistics.median(pooled[name])
        size = sizes.get(name)
        size_text = f"{size / args.steps / 1024:.1f} KiB" if size is not None else "-"
        print(
            f"{name:45} {step / 1e6:9.3f} ms {step / base_pooled:6.2f}x"
            f" {q1:6.2f}-{q3:.2f}x {size_text:>11}"
        )


if __name__ == "__main__":
    main()
