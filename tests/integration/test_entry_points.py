"""Every installed console script runs in the CLI scaffold: a usage mistake and an
unusable path are one line on stderr and exit code 2, and --help lists the codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli

LONG = "x" * 300
"""A path component no file system accepts: every open or stat of it is an OSError."""

UNUSABLE_PATH = {
    "traincheck-run": ["-o", LONG, sys.executable, "-c", "pass"],
    "traincheck-collect": ["-p", "train.py", "-o", LONG],
    "traincheck-infer": ["-f", LONG, "-o", "inv.json"],
    "traincheck-check": ["-f", "t", "-i", LONG],
    "traincheck-onlinecheck": ["-f", "t", "-i", LONG],
    "traincheck-attach": ["-i", LONG, "1"],
    "traincheck-ps": ["unexpected-argument"],
}
SCRIPTS = sorted(UNUSABLE_PATH)


def _run(name: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([cli(name), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_usage_mistake_and_an_unusable_path_are_one_line_and_exit_2(
    name: str, tmp_path: Path
) -> None:
    (tmp_path / "train.py").write_text("pass\n")
    for args in (["--no-such-option"], UNUSABLE_PATH[name]):
        result = _run(name, args, tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith(f"{name}: error: "), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.py"], "nothing is created"


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_lists_the_exit_codes(name: str, tmp_path: Path) -> None:
    result = _run(name, ["--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    codes = result.stdout[result.stdout.index("Exit codes:") :]
    for code in ("2", "70", "130"):
        assert f"\n  {code} " in codes
