"""Result files: outcome classes, the summary, and the report built from it."""

from __future__ import annotations

import json
import re
import stat
from dataclasses import replace
from pathlib import Path

from test_alert_sink import BASE
from test_live_offline_property import invariants_file

from traincheck.analysis.invariants_file import load_invariants
from traincheck.analysis.relations.base import InvariantResult
from traincheck.analysis.report_html import render_report
from traincheck.analysis.results import (
    OUTCOMES,
    ViolationLedger,
    default_output_dir,
    outcome_of,
    summarize,
    write_results,
)
from traincheck.analysis.violations import Violation
from traincheck.records import RunDescription, decode_results_summary


def results_of_each_kind() -> list[InvariantResult]:
    invs = list(load_invariants(invariants_file()))[:4]
    failed, passed, untriggered, uncheckable = (InvariantResult(inv) for inv in invs)
    passed.record_pass()
    uncheckable.unchecked = 3
    return [failed, passed, untriggered, uncheckable]


def test_uncheckable_is_apart_from_not_triggered() -> None:
    results = results_of_each_kind()
    v = results[0].record_violation(replace(BASE, invariant_id=results[0].invariant.id))
    assert v.occurrence == 1
    assert [outcome_of(r) for r in results] == ["failed", "passed", "not_triggered", "uncheckable"]


def _ledger(results: list[InvariantResult]) -> ViolationLedger:
    ledger = ViolationLedger()
    for step in range(7):
        inv_id = results[0].invariant.id
        ledger.add(replace(BASE, invariant_id=inv_id, step=step, seq=step + 1, rank=step % 2))
    return ledger


def test_files_and_summary(tmp_path: Path) -> None:
    results = results_of_each_kind()
    results[0].violated = 7
    ledger = _ledger(results)
    summary = write_results(tmp_path, results, ledger)
    for name in ("failed", "passed", "not_triggered", "uncheckable"):
        lines = (tmp_path / f"{name}.log").read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["outcome"] == name
    (row,) = summary.violations
    assert (row.first_step, row.last_step, row.occurrences) == (0, 6, 7)
    assert row.ranks == [0, 1] and row.root_cause_rank == 1
    failed = json.loads((tmp_path / "failed.log").read_text())
    assert len(failed["violations"]) == 5  # bounded examples, full count in the summary
    written = (tmp_path / "violations_summary.json").read_bytes()
    assert decode_results_summary(written) == summary
    assert json.loads(written)["violations"][0]["occurrences"] == 7


def test_report_counts_equal_the_summary(tmp_path: Path) -> None:
    results = results_of_each_kind()
    summary = write_results(tmp_path, results, _ledger(results))
    page = (tmp_path / "report.html").read_text()
    counts = dict(re.findall(r"data-key='([\w-]+)' data-count='(\d+)'", page))
    assert int(counts["total_violations"]) == summary.total_violations == 7
    assert int(counts["distinct_invariants_violated"]) == summary.distinct_invariants_violated
    assert int(counts["invariants_checked"]) == summary.invariants_checked
    for outcome in OUTCOMES:
        assert int(counts[f"outcome-{outcome}"]) == getattr(summary.outcomes, outcome)
    assert "<script" not in page and "http" not in page  # self-contained


def test_report_escapes_trace_data() -> None:
    summary = summarize([], ViolationLedger())
    bad: Violation = replace(BASE, what="<img src=x onerror=alert(1)>", seq=1)
    ledger = ViolationLedger()
    ledger.add(bad)
    page = render_report(summarize([], ledger))
    assert "<img" not in page and "&lt;img" in page
    assert "No problem found" in render_report(summary)


def test_report_leads_with_findings_and_a_timeline_then_lists_the_rest(tmp_path: Path) -> None:
    results = results_of_each_kind()
    results[0].violated = 7
    ledger = _ledger(results)
    run = RunDescription(command=["python", "train.py"], script="train.py", ranks=[0, 1])
    summary = write_results(tmp_path, results, ledger, run=run)
    page = (tmp_path / "report.html").read_text()
    (finding,) = summary.findings
    assert finding.invariant_ids == [results[0].invariant.id]
    assert finding.steps_by_rank == {"0": [0, 2, 4, 6], "1": [1, 3, 5]}
    assert page.index("data-finding='1'") < page.index("<svg") < page.index("data-outcome=")
    assert page.count("class='mark'") == 7  # one mark per (rank, step) with a violation
    assert "<dd>python train.py</dd>" in page and "<dd>0, 1</dd>" in page
    for outcome in ("passed", "not_triggered", "uncheckable"):
        (row,) = summary.invariants_by_outcome[outcome]
        assert f"data-outcome='{outcome}'" in page and row.id in page
    counts = dict(re.findall(r"data-key='([\w-]+)' data-count='(\d+)'", page))
    assert int(counts["findings"]) == len(summary.findings) == 1


def test_a_clean_run_says_so_without_red_zeros() -> None:
    results = results_of_each_kind()[1:]
    page = render_report(summarize(results, ViolationLedger()))
    cards = page[page.index("class='cards'") :]
    assert "No problem found" in page and "failed nonzero" not in cards
    assert "<svg" not in page and "data-finding" not in page


def test_default_output_dir_is_beside_the_trace(tmp_path: Path) -> None:
    trace = tmp_path / "run1"
    trace.mkdir()
    first = default_output_dir(trace)
    assert first.parent == tmp_path and first.name.startswith("run1_check_")
    first.mkdir()
    assert default_output_dir(trace) != first


def test_result_files_are_owner_only(tmp_path: Path) -> None:
    """They quote the run's command, source lines and variable names."""
    results = results_of_each_kind()
    outdir = tmp_path / "results"
    write_results(outdir, results, _ledger(results))
    assert stat.S_IMODE(outdir.stat().st_mode) == 0o700
    files = sorted(outdir.iterdir())
    assert [f.name for f in files] == [
        "failed.log",
        "not_triggered.log",
        "passed.log",
        "report.html",
        "uncheckable.log",
        "violations_summary.json",
    ]
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
