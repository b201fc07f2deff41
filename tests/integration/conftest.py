"""Shared helpers for end-to-end tests: run the installed CLIs as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "silent_bugs"
SCRIPTS = Path(__file__).resolve().parent / "scripts"
BIN = Path(sys.executable).parent


def cli(name: str) -> str:
    """Path of an installed console script of this project (in the test's venv)."""
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}; run scripts/setup")
    return str(path)


def python_cmd(script: Path, *args: str) -> list[str]:
    return [sys.executable, str(script), *args]


def run_cli(args: list[str], *, timeout_s: float = 120, cwd: Path | None = None):
    """Run a command to completion with a timeout; dump its output if it hangs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}
    try:
        return subprocess.run(
            args, capture_output=True, text=True, timeout=timeout_s, cwd=cwd, env=env
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{args} hung for {timeout_s}s\nstdout:\n{exc.stdout}\nstderr:\n{exc.stderr}")


@dataclass(frozen=True)
class Inferred:
    invariants: Path
    traces: list[Path]


def trace_and_infer(tmp: Path, script: Path, seeds: list[int], steps: int = 20) -> Inferred:
    traces = []
    for seed in seeds:
        out = tmp / f"healthy-seed{seed}"
        result = run_cli(
            [
                cli("traincheck-run"),
                "--output-dir",
                str(out),
                "--",
                *python_cmd(script, "--seed", str(seed), "--steps", str(steps)),
            ]
        )
        assert result.returncode == 0, result.stderr
        traces.append(out)
    invariants = tmp / "invariants.json"
    result = run_cli([cli("traincheck-infer"), "-f", *map(str, traces), "-o", str(invariants)])
    assert result.returncode == 0, result.stderr
    return Inferred(invariants, traces)


@pytest.fixture(scope="session")
def zero_grad_invariants(tmp_path_factory) -> Inferred:
    """Invariants inferred from one healthy run of the missing-zero_grad pipeline (a
    user often has one; every test using them must hold with one)."""
    tmp = tmp_path_factory.mktemp("zero_grad_healthy")
    return trace_and_infer(tmp, EXAMPLES / "missing_zero_grad" / "healthy.py", [1])


@pytest.fixture(scope="session")
def stale_optimizer_invariants(tmp_path_factory) -> Inferred:
    tmp = tmp_path_factory.mktemp("stale_optimizer_healthy")
    return trace_and_infer(tmp, EXAMPLES / "stale_optimizer" / "healthy.py", [1])
