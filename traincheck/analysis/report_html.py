"""``report.html``: one self-contained page (no scripts, no external assets).

It is rendered from the very summary written to ``violations_summary.json``,
so every count on the page is that file's count. Each count is also carried in a
``data-count`` attribute, so a test (or a person with a browser's inspector) can
compare the page with the file without parsing prose. Every value from the trace
or the invariants file is HTML-escaped: a variable name is data, never markup.
"""

from __future__ import annotations

from html import escape
from typing import Any

from traincheck.records import ResultsSummary, ViolationSummary

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1d2330; }
h1 { font-size: 20px; margin: 0 0 4px; } .sub { color: #5b6475; margin-bottom: 16px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 12px 0 20px; }
.card { border: 1px solid #d8dde6; border-radius: 8px; padding: 10px 14px; min-width: 120px; }
.card .n { font-size: 24px; font-weight: 600; } .card .l { color: #5b6475; }
.failed .n { color: #b42318; } .passed .n { color: #067647; }
.uncheckable .n { color: #b54708; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #e4e7ec; padding: 6px 8px; text-align: left;
         vertical-align: top; }
th { background: #f5f6f8; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 12px; background: #f2f4f7; padding: 1px 4px; border-radius: 4px; }
.ev { color: #475467; font-size: 12px; }
"""

_CARDS = (
    ("total_violations", "violations", "failed"),
    ("distinct_invariants_violated", "invariants violated", "failed"),
    ("invariants_checked", "invariants checked", ""),
)
_OUTCOME_CARDS = (
    ("failed", "failed"),
    ("passed", "passed"),
    ("not_triggered", "not triggered"),
    ("uncheckable", "uncheckable (inputs not traced)"),
)


def render_report(summary: ResultsSummary, *, title: str = "TrainCheck report") -> str:
    """The whole page as a string."""
    cards = [_card(key, label, css, getattr(summary, key)) for key, label, css in _CARDS]
    cards += [
        _card(f"outcome-{key}", label, key, getattr(summary.outcomes, key))
        for key, label in _OUTCOME_CARDS
    ]
    first = summary.first_violation_step
    headline = (
        "No invariant was violated."
        if first is None
        else f"First violation at step {first}; violated invariants, most likely root cause first:"
    )
    rows = "\n".join(_row(v) for v in summary.violations)
    table = (
        "<table><thead><tr><th>#</th><th>what broke</th><th>relation</th><th>steps</th>"
        "<th>occurrences</th><th>ranks</th><th>evidence</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        if rows
        else ""
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1><div class='sub'>{escape(headline)}</div>"
        f"<div class='cards'>{''.join(cards)}</div>{table}</body></html>\n"
    )


def _card(key: str, label: str, css: str, value: Any) -> str:
    return (
        f"<div class='card {escape(css)}' data-key='{escape(key)}' data-count='{int(value)}'>"
        f"<div class='n'>{int(value)}</div><div class='l'>{escape(label)}</div></div>"
    )


def _row(v: ViolationSummary) -> str:
    steps = f"{v.first_step}..{v.last_step}"
    detected = v.first_detection_step
    if detected is not None and detected != v.first_step:
        steps += f" (detected at {detected})"
    ranks = ", ".join(str(r) for r in v.ranks)
    evidence = (
        f"<div>expected: {escape(v.expected)}</div>"
        f"<div>observed: {escape(v.observed)}</div>"
        f"<div class='ev'><code>{escape(v.invariant_id)}</code> "
        f"{escape(v.display_name)}; held in "
        f"{v.num_positive_examples} healthy examples</div>"
    )
    return (
        f"<tr data-invariant='{escape(v.invariant_id)}'>"
        f"<td class='num'>{v.root_cause_rank}</td><td>{escape(v.what)}</td>"
        f"<td>{escape(v.relation_type)}</td><td>{escape(steps)}</td>"
        f"<td class='num' data-count='{v.occurrences}'>{v.occurrences}</td>"
        f"<td>{escape(ranks)}</td><td>{evidence}</td></tr>"
    )
