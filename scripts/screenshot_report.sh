#!/usr/bin/env bash
# Open a report.html in headless Chromium (Debian `chromium`), save a PNG, and check
# that the counts the browser rendered equal those of violations_summary.json.
#   scripts/screenshot_report.sh RESULTS_DIR [OUT.png]      (default OUT: docs/report.png)
# Needs: apt-get install -y chromium. Exit 2 on a usage error, 1 when counts differ.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:?usage: scripts/screenshot_report.sh RESULTS_DIR [OUT.png]}
out=${2:-docs/report.png}
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "screenshot_report.sh: error: chromium not found (apt-get install -y chromium)" >&2
    exit 2
fi
[ -f "$results/report.html" ] || { echo "screenshot_report.sh: error: no $results/report.html" >&2; exit 2; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-background-networking
       --disable-component-update --disable-sync --no-first-run "--user-data-dir=$profile")
page="file://$(realpath "$results/report.html")"
# The DOM as the browser rendered it, to compare its counts with the summary file.
timeout 60 "$browser" "${flags[@]}" --dump-dom "$page" > "$profile/dom.html" 2>/dev/null
timeout 60 "$browser" "${flags[@]}" --window-size=1280,800 --screenshot="$(realpath -m "$out")" \
    "$page" 2>/dev/null
.venv/bin/python - "$profile/dom.html" "$results/violations_summary.json" <<'PY'
import json, re, sys
dom = open(sys.argv[1]).read()
summary = json.load(open(sys.argv[2]))
shown = {k: int(v) for k, v in re.findall(r'data-key="([\w-]+)" data-count="(\d+)"', dom)}
expected = {k: summary[k] for k in ("total_violations", "distinct_invariants_violated",
                                    "invariants_checked")}
expected |= {f"outcome-{k}": v for k, v in summary["outcomes"].items()}
expected["findings"] = len(summary["findings"])
if summary.get("damage"):
    expected["damage"] = len(summary["damage"])
marks = dom.count('class="mark"')
want_marks = sum(len(s) for f in summary["findings"] for s in f["steps_by_rank"].values())
if marks != want_marks:
    sys.exit(f"report.html draws {marks} timeline marks, the summary has {want_marks}")
losses = summary.get("run", {}).get("loss_by_step", [])
curve = re.search(r'<polyline class="loss" points="([^"]*)"', dom)
drawn = len(curve.group(1).split()) if curve else 0
if drawn != len(losses):
    sys.exit(f"report.html draws {drawn} loss points, the summary has {len(losses)}")
expected_losses = len(losses)
shown_findings = len(re.findall(r'data-finding="\d+"', dom))
if shown_findings != len(summary["findings"]):
    sys.exit(f"report.html shows {shown_findings} findings, the summary {len(summary['findings'])}")
if shown != expected:
    sys.exit(f"report.html shows {shown}, violations_summary.json says {expected}")
print(f"counts in the rendered page equal violations_summary.json: {expected}, "
      f"{expected_losses} loss points")
PY
echo "screenshot: $out"
