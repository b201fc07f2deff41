"""A job's traceback is the same traced and untraced: no frame of TrainCheck in it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import SCRIPTS, cli, python_cmd, run_cli

TRACEBACK = re.compile(r"^Traceback \(most recent call last\):\n.*?^ValueError: .*?$", re.M | re.S)


def _traceback(stderr: str) -> str:
    found = TRACEBACK.search(stderr)
    assert found is not None, stderr
    return found.group(0)


def test_traceback_through_traced_calls_is_the_untraced_one(tmp_path: Path) -> None:
    job = python_cmd(SCRIPTS / "raise_in_forward.py")
    untraced = subprocess.run(job, capture_output=True, text=True, timeout=120)
    traced = run_cli(
        [cli("traincheck-run"), "--output-dir", str(tmp_path / "trace"), "--", *job],
        timeout_s=180,
    )
    assert untraced.returncode == traced.returncode == 1, traced.stderr
    assert traced.stdout == untraced.stdout
    expected = _traceback(untraced.stderr)
    assert "Faulty" in expected or "forward" in expected  # not vacuous: through the model
    assert _traceback(traced.stderr) == expected
    assert "traincheck" not in _traceback(traced.stderr)
