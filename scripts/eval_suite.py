#!/usr/bin/env python3
"""Evaluate TrainCheck on the silent-bug suite (examples/silent_bugs/suite.json).

For every pair, through the real CLIs only: trace the healthy pipeline with the
suite's inference arguments (``traincheck-run``), infer invariants from those
traces (``traincheck-infer``), then run the buggy pipeline and every extra
healthy variant under live checking (``traincheck-run --invariants``) and read
the result files the sidecar writes at the end of the run
(``TRACE/live_check/violations_summary.json``).

Printed table, one row per pair:

- detected: the buggy run raised at least one alert;
- first alert: the step at which the first alert was raised (the step the
  stream had reached when it was detected), against the bug's trigger step;
- root-cause rank: position, in the alert order (root cause first, the order
  of violations_summary.json and of the live alerts), of the first alert whose
  APIs, variables or headline match the pair's ``root_cause`` expression;
- findings: how many findings the buggy run's violations were grouped into
  (target: 1 for a single-cause bug), whether the first one matches the pair's
  ``root_cause`` expression, and its headline;
- false alarms: violations raised on the extra healthy variants.

``--references N`` (1 or 2) sets how many of the suite's "infer" runs are traced
and given to inference: the two protocols of the evaluation (invariants from one
reference run, or from two).

Usage: scripts/eval_suite.py [--work-dir DIR] [--jobs N] [--only NAME ...] [--json FILE]
                             [--references N]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "examples" / "silent_bugs"
BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 180


@dataclass
class PairResult:
    name: str
    bug: str
    trigger_step: int
    detected: bool = False
    first_alert_step: int | None = None
    first_violation_step: int | None = None
    alerts: int = 0
    root_cause_rank: int | None = None
    top_alert: str = ""
    findings: int = 0
    root_cause_finding_first: bool = False
    top_finding: str = ""
    false_alarms: int = 0
    false_alarm_invariants: list[str] = field(default_factory=list)
    invariants: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def in_time(self) -> bool:
        return self.first_alert_step is not None and (
            0 <= self.first_alert_step - self.trigger_step <= 1
        )


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def _traced(script: Path, out: Path, args: list[str], invariants: Path | None) -> dict | None:
    """Run one pipeline under traincheck-run; return its live summary (None when unchecked)."""
    cmd = [str(BIN / "traincheck-run"), "--output-dir", str(out)]
    if invariants is not None:
        cmd += ["--invariants", str(invariants)]
    result = _run([*cmd, "--", sys.executable, str(script), *args])
    if result.returncode != 0:
        raise RuntimeError(f"{script.parent.name}/{script.name} {args}: {result.stderr[-800:]}")
    if invariants is None:
        return None
    return json.loads((out / "live_check" / "violations_summary.json").read_text())


def evaluate(pair: dict, suite: dict, work: Path, references: int) -> PairResult:
    result = PairResult(pair["name"], pair["bug"], pair["trigger_step"])
    started = time.monotonic()
    folder, pair_work = SUITE / pair["name"], work / pair["name"]
    shutil.rmtree(pair_work, ignore_errors=True)
    pair_work.mkdir(parents=True)
    try:
        traces = []
        for i, args in enumerate(suite["infer"][:references]):
            traces.append(pair_work / f"infer-{i}")
            _traced(
                folder / "healthy.py",
                traces[-1],
                [*args, "--steps", str(suite["infer_steps"])],
                None,
            )
        invariants = pair_work / "invariants.json"
        infer = _run(
            [str(BIN / "traincheck-infer"), "-f", *map(str, traces), "-o", str(invariants)]
        )
        if infer.returncode != 0:
            raise RuntimeError(f"traincheck-infer: {infer.stderr[-800:]}")
        result.invariants = len(json.loads(invariants.read_text()).get("invariants", []))
        steps = ["--steps", str(suite["check_steps"])]
        buggy = _traced(
            folder / "buggy.py", pair_work / "buggy", ["--seed", "3", *steps], invariants
        )
        _score_buggy(result, buggy, re.compile(pair["root_cause"], re.IGNORECASE))
        for i, args in enumerate(pair["healthy_variants"]):
            summary = _traced(
                folder / "healthy.py", pair_work / f"healthy-{i}", [*args, *steps], invariants
            )
            result.false_alarms += summary["total_violations"]
            result.false_alarm_invariants += [
                f"{v['relation_type']}: {v['display_name']}" for v in summary["violations"]
            ]
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        result.error = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
    result.seconds = round(time.monotonic() - started, 1)
    return result


def _score_buggy(result: PairResult, summary: dict, root_cause: re.Pattern[str]) -> None:
    violations = summary["violations"]
    result.alerts = len(violations)
    result.detected = summary["total_violations"] > 0
    result.first_alert_step = summary.get("first_detection_step")
    result.first_violation_step = summary.get("first_violation_step")
    if violations:
        result.top_alert = violations[0]["what"]
    for v in violations:
        if root_cause.search(_haystack(v)):
            result.root_cause_rank = v["root_cause_rank"]
            break
    findings = summary.get("findings", [])
    result.findings = len(findings)
    if findings:
        top = findings[0]
        result.top_finding = top["headline"]
        by_id = {v["invariant_id"]: v for v in violations}
        members = " ".join(_haystack(by_id[i]) for i in top["invariant_ids"] if i in by_id)
        result.root_cause_finding_first = bool(
            root_cause.search(f"{top['headline']} {top['subject']} {members}")
        )


def _haystack(v: dict) -> str:
    return " ".join([*v["apis"], *v["variables"], v["what"], v["display_name"]])


def table(results: list[PairResult]) -> str:
    rows = [
        "| pair | detected | first alert step (trigger) | within 1 step | root-cause rank "
        "(of alerts) | findings | root cause is finding 1 | false alarms on healthy variants "
        "| first finding |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.error:
            rows.append(f"| {r.name} | error: {r.error} | | | | | | | |")
            continue
        first = "-" if r.first_alert_step is None else str(r.first_alert_step)
        rank = "-" if r.root_cause_rank is None else str(r.root_cause_rank)
        rows.append(
            f"| {r.name} | {'yes' if r.detected else 'no'} | {first} ({r.trigger_step}) | "
            f"{'yes' if r.in_time else 'no'} | {rank} (of {r.alerts}) | {r.findings} | "
            f"{'yes' if r.root_cause_finding_first else 'no'} | {r.false_alarms} | "
            f"{r.top_finding.replace('|', '/')} |"
        )
    ok = [r for r in results if not r.error]
    rows.append("")
    rows.append(
        f"detected {sum(r.detected for r in ok)}/{len(results)}; within one step "
        f"{sum(r.in_time for r in ok)}/{len(results)}; root cause ranked first "
        f"{sum(r.root_cause_rank == 1 for r in ok)}/{len(results)}; one finding "
        f"{sum(r.findings == 1 for r in ok)}/{len(results)}, root cause the first finding "
        f"{sum(r.root_cause_finding_first for r in ok)}/{len(results)}; false alarms on healthy "
        f"variants: {sum(r.false_alarms for r in ok)}"
    )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--jobs", type=int, default=2, help="pairs evaluated in parallel")
    parser.add_argument("--only", nargs="*", default=None, metavar="PAIR")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--references",
        type=int,
        choices=(1, 2),
        default=2,
        help="how many of the suite's healthy 'infer' runs invariants are inferred from",
    )
    args = parser.parse_args()
    suite = json.loads((SUITE / "suite.json").read_text())
    if args.references > len(suite["infer"]):
        parser.error(f"the suite has only {len(suite['infer'])} 'infer' runs")
    pairs = [p for p in suite["pairs"] if not args.only or p["name"] in args.only]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="traincheck-eval-"))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda p: evaluate(p, suite, work, args.references), pairs))
    print(table(results))
    print(f"\n{len(pairs)} pairs in {time.monotonic() - started:.0f} s; traces under {work}")
    for r in results:
        if r.false_alarm_invariants:
            print(f"false alarms, {r.name}: " + "; ".join(sorted(set(r.false_alarm_invariants))))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
