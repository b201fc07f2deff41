"""``report.html`` rendered by headless Chromium shows the counts of violations_summary.json."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import REPO, cli, run_cli


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed")
def test_report_in_headless_chromium(zero_grad_invariants, tmp_path):
    results = tmp_path / "results"
    check = run_cli(
        [
            cli("traincheck-check"),
            "-f",
            str(zero_grad_invariants.traces[0]),
            "-i",
            str(zero_grad_invariants.invariants),
            "-o",
            str(results),
        ]
    )
    assert check.returncode == 0, check.stderr
    png = tmp_path / "report.png"
    shot = subprocess.run(
        [str(REPO / "scripts" / "screenshot_report.sh"), str(results), str(png)],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert shot.returncode == 0, shot.stdout + shot.stderr
    assert "equal violations_summary.json" in shot.stdout
    assert png.read_bytes().startswith(b"\x89PNG")
