"""A job that starts another interpreter (without traincheck) under traincheck-run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, run_cli

BASE_PYTHON = getattr(sys, "_base_executable", "")


def _traincheck_importable(python: str, cwd: Path) -> bool:
    probe = subprocess.run(
        [python, "-c", "import traincheck"], capture_output=True, text=True, timeout=60, cwd=cwd
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    not BASE_PYTHON or BASE_PYTHON == sys.executable, reason="no base interpreter outside the venv"
)
def test_another_interpreter_keeps_its_output_and_its_own_sitecustomize(tmp_path: Path) -> None:
    """The bootstrap folder on PYTHONPATH reaches a python that cannot import traincheck:
    it must print nothing of ours and still run that interpreter's own sitecustomize."""
    if _traincheck_importable(BASE_PYTHON, tmp_path):
        pytest.skip(f"{BASE_PYTHON} can import traincheck")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("print('their sitecustomize ran')\n")
    job = tmp_path / "job.py"
    job.write_text(
        "import os, subprocess, sys\n"
        "env = dict(os.environ)\n"
        f"env['PYTHONPATH'] = env.get('PYTHONPATH', '') + ':{theirs}'\n"
        f"out = subprocess.run([{BASE_PYTHON!r}, '-c', 'print(42)'], env=env,\n"
        "                     capture_output=True, text=True)\n"
        "sys.stdout.write(out.stdout)\n"
        "sys.stderr.write(out.stderr)\n"
        "sys.exit(out.returncode)\n"
    )
    result = run_cli(
        [
            cli("traincheck-run"),
            "--output-dir",
            str(tmp_path / "trace"),
            "--",
            sys.executable,
            str(job),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["their sitecustomize ran", "42"]
    child_stderr = [line for line in result.stderr.splitlines() if "traincheck-run:" not in line]
    assert child_stderr == [], result.stderr


@pytest.mark.skipif(
    not BASE_PYTHON or BASE_PYTHON == sys.executable, reason="no base interpreter outside the venv"
)
def test_another_interpreter_without_a_sitecustomize_of_its_own_prints_nothing(
    tmp_path: Path,
) -> None:
    if _traincheck_importable(BASE_PYTHON, tmp_path):
        pytest.skip(f"{BASE_PYTHON} can import traincheck")
    result = run_cli(
        [
            cli("traincheck-run"),
            "--output-dir",
            str(tmp_path / "trace"),
            "--",
            BASE_PYTHON,
            "-c",
            "print(42)",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42\n"
    assert [line for line in result.stderr.splitlines() if "traincheck-run:" not in line] == []
