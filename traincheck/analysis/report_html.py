"""``report.html``: one self-contained page (no scripts, no external assets).

It is rendered from the very summary dict written to ``violations_summary.json``,
so every count on the page is that file's count. Each count is also carried in a
``data-count`` attribute, so a test (or a person with a browser's inspector) can
compare the page with the file without parsing prose. Every value from the trace
or the invariants file is HTML-escaped: a variable name is data, never markup.

The page reads top-down as a diagnosis: the run, the verdict, the findings (each
expandable into the invariants behind it), a timeline of when each finding's
violations happened on which rank, then the invariants that held or could not
be checked. Expanding uses ``<details>``, which needs no script.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from traincheck.records import FindingSummary, ResultsSummary, RunDescription, ViolationSummary

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1d2330; max-width: 1100px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.verdict { font-size: 16px; margin: 8px 0 12px; } .verdict.bad { color: #b42318; }
.verdict.good { color: #067647; }
.damage { color: #b54708; margin: 4px 0 12px; }
.run { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; color: #344054; }
.run dt { color: #5b6475; } .run dd { margin: 0; overflow-wrap: anywhere; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 12px 0 20px; }
.card { border: 1px solid #d8dde6; border-radius: 8px; padding: 10px 14px; min-width: 110px; }
.card .n { font-size: 24px; font-weight: 600; } .card .l { color: #5b6475; }
.card.failed.nonzero .n { color: #b42318; } .card.passed .n { color: #067647; }
.card.uncheckable.nonzero .n { color: #b54708; }
details.finding { border: 1px solid #f3c3be; border-radius: 8px; padding: 8px 12px;
                  margin: 8px 0; background: #fffbfa; }
details.finding > summary { cursor: pointer; font-weight: 600; }
.meta { color: #5b6475; font-size: 13px; margin: 4px 0; }
table { border-collapse: collapse; width: 100%; margin-top: 6px; }
th, td { border-bottom: 1px solid #e4e7ec; padding: 6px 8px; text-align: left;
         vertical-align: top; }
th { background: #f5f6f8; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 12px; background: #f2f4f7; padding: 1px 4px; border-radius: 4px; }
.ev { color: #475467; font-size: 12px; }
details.list { margin: 6px 0; } details.list li { margin: 2px 0; }
svg text { font: 11px system-ui, sans-serif; fill: #475467; }
svg text.range { font-size: 9px; }
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
_LISTS = (
    ("passed", "passed: held every time they applied"),
    ("not_triggered", "not triggered: what they speak of never happened in this run"),
    ("uncheckable", "uncheckable: the run did not trace what they need"),
)
_RANK_COLOURS = ("#b42318", "#175cd3", "#067647", "#b54708", "#6941c6", "#c11574")


def render_report(summary: ResultsSummary, *, title: str = "TrainCheck report") -> str:
    """The whole page as a string."""
    findings = summary.findings
    body = [
        f"<h1>{escape(title)}</h1>",
        _run_section(summary.run),
        _verdict(summary, findings),
        _damage(summary.damage),
        _cards(summary, findings),
    ]
    if findings:
        violations = {v.invariant_id: v for v in summary.violations}
        body.append("<h2>Findings, most likely root cause first</h2>")
        body += [_finding(f, violations, open_=i == 0) for i, f in enumerate(findings)]
        body += ["<h2>Timeline</h2>", _timeline(findings, summary.run)]
        body += ["<h2>Every violated invariant</h2>", _violations_table(summary)]
    elif summary.run.loss_by_step:
        body += ["<h2>Timeline</h2>", _timeline(findings, summary.run)]
    body.append(_other_invariants(summary))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )


def _run_section(run: RunDescription) -> str:
    rows = [
        ("command", " ".join(run.command) or None),
        ("script", run.script),
        ("started", run.started),
        ("duration", f"{run.duration_s} s" if run.duration_s is not None else None),
        ("trace", run.trace),
        ("ranks", ", ".join(map(str, run.ranks)) or None),
        ("invariants", run.invariants),
        ("TrainCheck", run.traincheck_version),
    ]
    items = "".join(
        f"<dt>{escape(label)}</dt><dd>{escape(str(value))}</dd>"
        for label, value in rows
        if value is not None
    )
    return f"<dl class='run'>{items}</dl>" if items else ""


def _verdict(summary: ResultsSummary, findings: Sequence[FindingSummary]) -> str:
    if not findings and not summary.total_violations:
        return (
            "<div class='verdict good'>No problem found: every invariant that applied held "
            f"({summary.invariants_checked} checked, {summary.outcomes.passed} applied "
            "and held).</div>"
        )
    noun = "finding" if len(findings) == 1 else "findings"
    return (
        f"<div class='verdict bad'>{len(findings)} {noun} from "
        f"{summary.total_violations} violations of "
        f"{summary.distinct_invariants_violated} invariants; "
        f"the first at step {escape(str(summary.first_violation_step))}.</div>"
    )


def _damage(damage: Sequence[str]) -> str:
    """What reading the trace skipped: a verdict on a damaged trace says so."""
    if not damage:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in damage)
    return (
        f"<div class='damage' data-key='damage' data-count='{len(damage)}'>The trace is "
        f"damaged; the check read around it:<ul>{items}</ul></div>"
    )


def _cards(summary: ResultsSummary, findings: Sequence[FindingSummary]) -> str:
    cards = [_card("findings", "findings", "failed", len(findings))]
    cards += [_card(key, label, css, getattr(summary, key)) for key, label, css in _CARDS]
    cards += [
        _card(f"outcome-{key}", label, key, getattr(summary.outcomes, key))
        for key, label in _OUTCOME_CARDS
    ]
    return f"<div class='cards'>{''.join(cards)}</div>"


def _card(key: str, label: str, css: str, value: int) -> str:
    nonzero = " nonzero" if int(value) else ""
    return (
        f"<div class='card {escape(css)}{nonzero}' data-key='{escape(key)}' "
        f"data-count='{int(value)}'><div class='n'>{int(value)}</div>"
        f"<div class='l'>{escape(label)}</div></div>"
    )


def _finding(
    finding: FindingSummary, violations: dict[str, ViolationSummary], *, open_: bool
) -> str:
    steps = _steps_text(finding.first_step, finding.last_step)
    ranks = ", ".join(map(str, finding.ranks))
    sources = "".join(f"<div><code>{escape(s)}</code></div>" for s in finding.sources)
    members = [violations[i] for i in finding.invariant_ids if i in violations]
    rows = "".join(_violation_row(v) for v in members)
    return (
        f"<details class='finding' data-finding='{finding.rank}'"
        f"{' open' if open_ else ''}><summary>{finding.rank}. "
        f"{escape(finding.headline)}</summary>"
        f"<div class='meta' data-count='{finding.violations}'>"
        f"{finding.invariants} invariants, {finding.violations} violations, "
        f"{escape(steps)}, ranks {escape(ranks)}</div>"
        f"<div>expected: {escape(finding.expected)}</div>"
        f"<div>observed: {escape(finding.observed)}</div>"
        f"{sources}{_table(rows)}</details>"
    )


def _steps_text(first: int, last: int) -> str:
    return f"step {first}" if first == last else f"steps {first}..{last}"


_TIMELINE_WIDTH = 900
_ROW_HEIGHT = 22
_LABEL_WIDTH = 40
_LOSS_HEIGHT = 70


def _timeline(findings: Sequence[FindingSummary], run: RunDescription) -> str:
    """Steps across: the training loss where the tracer read it, then one row per
    finding with a mark per step with a violation (per rank)."""
    losses = run.loss_by_step
    last = max(
        [f.last_step for f in findings] + [step for step, _ in losses] + [run.last_step or 0, 1]
    )
    plot = _TIMELINE_WIDTH - _LABEL_WIDTH - 10
    top = _LOSS_HEIGHT + 8 if losses else 0
    height = top + _ROW_HEIGHT * len(findings) + 24
    parts = [
        f"<svg width='{_TIMELINE_WIDTH}' height='{height}' "
        f"role='img' aria-label='training loss and violations per step'>"
    ]
    if losses:
        parts.append(_loss_curve(losses, last, plot))
    for row, finding in enumerate(findings):
        y = top + row * _ROW_HEIGHT + 4
        parts.append(f"<text x='0' y='{y + 13}'>#{finding.rank}</text>")
        parts.append(
            f"<line x1='{_LABEL_WIDTH}' y1='{y + 9}' x2='{_LABEL_WIDTH + plot}' y2='{y + 9}' "
            "stroke='#e4e7ec'/>"
        )
        for rank_text, steps in sorted(finding.steps_by_rank.items()):
            colour = _RANK_COLOURS[int(rank_text) % len(_RANK_COLOURS)]
            for step in steps:
                x = _LABEL_WIDTH + plot * int(step) / last
                parts.append(
                    f"<rect class='mark' x='{x:.1f}' y='{y + 2}' width='3' height='14' "
                    f"fill='{colour}'><title>finding {finding.rank}, rank "
                    f"{escape(rank_text)}, step {int(step)}</title></rect>"
                )
    axis_y = height - 6
    parts.append(f"<text x='{_LABEL_WIDTH}' y='{axis_y}'>step 0</text>")
    parts.append(
        f"<text x='{_LABEL_WIDTH + plot}' y='{axis_y}' text-anchor='end'>step {last}</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def _loss_curve(losses: Sequence[tuple[int, float]], last: int, plot: int) -> str:
    """The loss per step as a polyline over the plot's width, its range labelled."""
    low, high = min(v for _, v in losses), max(v for _, v in losses)
    span = high - low or 1.0
    points = " ".join(
        f"{_LABEL_WIDTH + plot * step / last:.1f},"
        f"{4 + (_LOSS_HEIGHT - 8) * (high - value) / span:.1f}"
        for step, value in losses
    )
    return (
        f"<text x='0' y='14'>loss</text>"
        f"<text x='0' y='28' class='range'>{high:.3g}</text>"
        f"<text x='0' y='{_LOSS_HEIGHT - 2}' class='range'>{low:.3g}</text>"
        f"<polyline class='loss' points='{points}' fill='none' stroke='#344054' "
        f"stroke-width='1.5'><title>training loss per step ({len(losses)} steps)</title>"
        "</polyline>"
    )


def _violations_table(summary: ResultsSummary) -> str:
    return _table("".join(_violation_row(v) for v in summary.violations))


def _table(rows: str) -> str:
    if not rows:
        return ""
    return (
        "<table><thead><tr><th>#</th><th>what broke</th><th>relation</th><th>steps</th>"
        "<th>occurrences</th><th>ranks</th><th>evidence</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _violation_row(v: ViolationSummary) -> str:
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


def _other_invariants(summary: ResultsSummary) -> str:
    blocks = []
    for outcome, label in _LISTS:
        rows = summary.invariants_by_outcome.get(outcome, [])
        total = int(getattr(summary.outcomes, outcome))
        if not total:
            continue
        items = "".join(f"<li><code>{escape(r.id)}</code> {escape(r.text)}</li>" for r in rows)
        more = (
            f"<li>... and {total - len(rows)} more (in {escape(outcome)}.log)</li>"
            if total > len(rows)
            else ""
        )
        blocks.append(
            f"<details class='list' data-outcome='{escape(outcome)}'><summary>{total} "
            f"{escape(label)}</summary><ul>{items}{more}</ul></details>"
        )
    if not blocks:
        return ""
    return "<h2>The other invariants</h2>" + "".join(blocks)
