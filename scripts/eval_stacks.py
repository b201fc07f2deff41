#!/usr/bin/env python3
"""Evaluate TrainCheck on the stack programs (examples/stacks/stacks.json).

Same spirit and output as scripts/eval_suite.py, through the real CLIs only. Per
program: run it untraced and under ``traincheck-run`` with the same arguments (wall
ratio, identical loss lines?), trace the two healthy inference runs, infer invariants
(``traincheck-infer``), then check every healthy variant and every bug run live
(``traincheck-run --invariants``) and read ``TRACE/live_check/violations_summary.json``.

Printed tables:

- programs: traced/untraced wall ratio, loss lines identical, invariants inferred,
  alerts on each healthy variant (target 0), and the variable-name prefixes seen in
  the trace (wrapper names such as ``module.``/``_orig_mod``/``_forward_module`` would
  show up here);
- bugs: detected?, first alert step against the trigger step, root-cause rank (of
  alerts), the top alert.

False alarms are listed after the tables with the invariant that fired.

Usage: scripts/eval_stacks.py [--work-dir DIR] [--jobs N] [--only PROGRAM ...] [--json FILE]
Programs whose library is not installed are reported as skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
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
STACKS = ROOT / "examples" / "stacks"
BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 300
LINE = re.compile(r"^step \d+ loss .*$", re.MULTILINE)
SUSPICIOUS = re.compile(
    r"(^|\.)(module|_orig_mod|_forward_module|_module|model)\.|Accelerated|Lightning"
)


@dataclass
class BugResult:
    program: str
    name: str
    trigger_step: int
    detected: bool = False
    first_alert_step: int | None = None
    alerts: int = 0
    root_cause_rank: int | None = None
    top_alert: str = ""
    alert_invariants: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def in_time(self) -> bool:
        return self.first_alert_step is not None and (
            0 <= self.first_alert_step - self.trigger_step <= 1
        )


@dataclass
class ProgramResult:
    name: str
    stack: str
    skipped: str = ""
    wall_plain_s: float = 0.0
    wall_traced_s: float = 0.0
    losses_identical: bool = False
    invariants: int = 0
    healthy_alerts: list[int] = field(default_factory=list)
    false_alarm_invariants: list[str] = field(default_factory=list)
    var_prefixes: list[str] = field(default_factory=list)
    suspicious_names: list[str] = field(default_factory=list)
    traced_stderr_extra: list[str] = field(default_factory=list)
    bugs: list[BugResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""


def _run(cmd: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    return result, time.monotonic() - started


def _traced(script: Path, out: Path, args: list[str], invariants: Path | None):
    cmd = [str(BIN / "traincheck-run"), "--output-dir", str(out)]
    if invariants is not None:
        cmd += ["--invariants", str(invariants)]
    result, wall = _run([*cmd, "--", sys.executable, str(script), *args])
    if result.returncode != 0:
        raise RuntimeError(f"{script.name} {args}: {result.stderr[-800:]}")
    summary = None
    if invariants is not None:
        summary = json.loads((out / "live_check" / "violations_summary.json").read_text())
    return result, wall, summary


def _available(module: str) -> bool:
    if module == "timm":
        sys.path.insert(0, str(STACKS))
        from _common import use_torchvision_stub_if_missing

        use_torchvision_stub_if_missing()
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _var_names(trace: Path) -> set[str]:
    from traincheck.sidecar.store import read_trace

    names = set()
    for stored in read_trace(trace).events():
        name = getattr(stored.event, "var_name", None)
        if name:
            names.add(str(name))
    return names


def _prefixes(names: set[str]) -> list[str]:
    return sorted({".".join(n.split(".")[:2]) for n in names})


def evaluate(program: dict, work: Path) -> ProgramResult:
    result = ProgramResult(program["name"], program["stack"])
    if not _available(program["requires"]):
        result.skipped = f"{program['requires']} not installed"
        return result
    started = time.monotonic()
    script, pw = STACKS / program["script"], work / program["name"]
    shutil.rmtree(pw, ignore_errors=True)
    pw.mkdir(parents=True)
    check = ["--steps", str(program["check_steps"])]
    try:
        # Overhead and identity: the first healthy variant, untraced then traced.
        args = [*program["healthy_variants"][0], *check]
        plain, result.wall_plain_s = _run([sys.executable, str(script), *args])
        if plain.returncode != 0:
            raise RuntimeError(f"untraced run failed: {plain.stderr[-800:]}")
        traced, result.wall_traced_s, _ = _traced(script, pw / "identity", args, None)
        result.losses_identical = LINE.findall(plain.stdout) == LINE.findall(traced.stdout)
        untraced_err = set(plain.stderr.splitlines())
        result.traced_stderr_extra = [
            line
            for line in traced.stderr.splitlines()
            if line not in untraced_err and not line.startswith("traincheck-run:")
        ]
        names = _var_names(pw / "identity")
        result.var_prefixes = _prefixes(names)
        result.suspicious_names = sorted(n for n in names if SUSPICIOUS.search(n))[:10]

        traces = []
        for i, infer_args in enumerate(program["infer"]):
            traces.append(pw / f"infer-{i}")
            _traced(script, traces[-1], [*infer_args, "--steps", str(program["infer_steps"])], None)
        invariants = pw / "invariants.json"
        infer, _ = _run(
            [str(BIN / "traincheck-infer"), "-f", *map(str, traces), "-o", str(invariants)]
        )
        if infer.returncode != 0:
            raise RuntimeError(f"traincheck-infer: {infer.stderr[-800:]}")
        result.invariants = len(json.loads(invariants.read_text()).get("invariants", []))

        for i, variant in enumerate(program["healthy_variants"]):
            _, _, summary = _traced(script, pw / f"healthy-{i}", [*variant, *check], invariants)
            result.healthy_alerts.append(summary["total_violations"])
            result.false_alarm_invariants += [
                f"{' '.join(variant)}: {v['relation_type']}: {v['display_name']}"
                for v in summary["violations"]
            ]
        for bug in program["bugs"]:
            br = BugResult(program["name"], bug["name"], bug["trigger_step"])
            result.bugs.append(br)
            try:
                args = ["--seed", "3", *bug["args"], *check, "--bug", bug["name"]]
                _, _, summary = _traced(script, pw / f"bug-{bug['name']}", args, invariants)
                _score(br, summary, re.compile(bug["root_cause"], re.IGNORECASE))
            except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
                br.error = _last_line(exc)
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        result.error = _last_line(exc)
    result.seconds = round(time.monotonic() - started, 1)
    return result


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else repr(exc)


def _score(result: BugResult, summary: dict, root_cause: re.Pattern[str]) -> None:
    violations = summary["violations"]
    result.alerts = len(violations)
    result.detected = summary["total_violations"] > 0
    result.first_alert_step = summary.get("first_detection_step")
    if violations:
        result.top_alert = violations[0]["what"]
    result.alert_invariants = [f"{v['relation_type']}: {v['display_name']}" for v in violations]
    for v in violations:
        haystack = " ".join([*v["apis"], *v["variables"], v["what"], v["display_name"]])
        if root_cause.search(haystack):
            result.root_cause_rank = v["root_cause_rank"]
            break


def _novel(bug: BugResult, healthy_alerts: dict[str, set[str]]) -> int:
    return sum(a not in healthy_alerts[bug.program] for a in bug.alert_invariants)


def tables(results: list[ProgramResult]) -> str:
    rows = [
        "| program | stack | traced/untraced wall | losses identical | invariants | "
        "alerts on healthy variants | var-name prefixes (suspicious) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.skipped or r.error:
            rows.append(f"| {r.name} | {r.stack} | {r.skipped or 'error: ' + r.error} | | | | |")
            continue
        ratio = r.wall_traced_s / r.wall_plain_s if r.wall_plain_s else float("nan")
        suspicious = f" ({', '.join(r.suspicious_names)})" if r.suspicious_names else ""
        rows.append(
            f"| {r.name} | {r.stack} | {ratio:.2f} ({r.wall_traced_s:.1f}/{r.wall_plain_s:.1f} s)"
            f" | {'yes' if r.losses_identical else 'NO'} | {r.invariants} | "
            f"{', '.join(map(str, r.healthy_alerts))} | "
            f"{', '.join(r.var_prefixes[:6])}{'...' if len(r.var_prefixes) > 6 else ''}"
            f"{suspicious} |"
        )
    rows += [
        "",
        "| program | bug | detected | alerts not also raised on a healthy variant | "
        "first alert step (trigger) | within 1 step | root-cause rank (of alerts) | top alert |",
        "|---|---|---|---|---|---|---|---|",
    ]
    bugs = [b for r in results for b in r.bugs]
    healthy_alerts = {
        r.name: {line.split(": ", 1)[1] for line in r.false_alarm_invariants} for r in results
    }
    for b in bugs:
        if b.error:
            rows.append(f"| {b.program} | {b.name} | error: {b.error} | | | | | |")
            continue
        first = "-" if b.first_alert_step is None else str(b.first_alert_step)
        rank = "-" if b.root_cause_rank is None else str(b.root_cause_rank)
        rows.append(
            f"| {b.program} | {b.name} | {'yes' if b.detected else 'no'} | "
            f"{_novel(b, healthy_alerts)} | {first} "
            f"({b.trigger_step}) | {'yes' if b.in_time else 'no'} | {rank} (of {b.alerts}) | "
            f"{b.top_alert.replace('|', '/')[:140]} |"
        )
    ok = [b for b in bugs if not b.error]
    ran = [r for r in results if not r.skipped and not r.error]
    rows.append("")
    rows.append(
        f"detected {sum(b.detected for b in ok)}/{len(bugs)} (with an alert that no healthy "
        f"variant raised: {sum(_novel(b, healthy_alerts) > 0 for b in ok)}/{len(bugs)}); "
        f"within one step "
        f"{sum(b.in_time for b in ok)}/{len(bugs)}; root cause ranked first "
        f"{sum(b.root_cause_rank == 1 for b in ok)}/{len(bugs)}; alerts on healthy variants: "
        f"{sum(sum(r.healthy_alerts) for r in ran)} over "
        f"{sum(len(r.healthy_alerts) for r in ran)} runs; loss lines identical traced/untraced: "
        f"{sum(r.losses_identical for r in ran)}/{len(ran)}"
    )
    return "\n".join(rows)


def _load_results(path: Path) -> list[ProgramResult]:
    results = []
    for raw in json.loads(path.read_text()):
        bugs = [BugResult(**{k: v for k, v in b.items() if k != "in_time"}) for b in raw["bugs"]]
        results.append(ProgramResult(**{**raw, "bugs": bugs}))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--jobs", type=int, default=1, help="programs evaluated in parallel")
    parser.add_argument("--only", nargs="*", default=None, metavar="PROGRAM")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--from-json", type=Path, default=None, help="re-print a saved --json")
    args = parser.parse_args()
    if args.from_json:
        print(tables(_load_results(args.from_json)))
        return 0
    suite = json.loads((STACKS / "stacks.json").read_text())
    programs = [p for p in suite["programs"] if not args.only or p["name"] in args.only]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="traincheck-stacks-"))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda p: evaluate(p, work), programs))
    print(tables(results))
    print(f"\n{len(programs)} programs in {time.monotonic() - started:.0f} s; traces under {work}")
    for r in results:
        for line in sorted(set(r.false_alarm_invariants)):
            print(f"false alarm, {r.name}: {line}")
        for line in r.traced_stderr_extra:
            print(f"stderr added by tracing, {r.name}: {line}")
    for r in results:
        for b in r.bugs:
            if b.alert_invariants:
                print(f"alerts, {r.name}/{b.name}: " + "; ".join(b.alert_invariants[:5]))
    if args.json:
        payload = [
            {**asdict(r), "bugs": [{**asdict(b), "in_time": b.in_time} for b in r.bugs]}
            for r in results
        ]
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
