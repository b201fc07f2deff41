"""traincheck-run with --invariants: live alerts on stderr, counted, optional exit 1.

The fake job calls ``Optimizer.step`` without ever calling ``zero_grad``, so the
invariant "zero_grad is called before every step" is violated at its first step.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from traincheck import environment

PRODUCER = Path(__file__).parent / "scripts" / "producer_fake_job.py"
LAUNCHER = [sys.executable, "-m", "traincheck.launcher.cli"]


@pytest.fixture
def invariants_file(tmp_path: Path) -> Path:
    invariants = pytest.importorskip("traincheck.analysis.invariants")
    inv = invariants.make_invariant(
        "FunctionCoverRelation",
        (
            invariants.APIParam("torch.optim.Optimizer.zero_grad"),
            invariants.APIParam("torch.optim.Optimizer.step"),
        ),
        None,
        group="func_cover",
        text_description="zero_grad is called before every step",
        num_positive_examples=10,
        num_negative_examples=0,
    )
    path = tmp_path / "inv.json"
    from traincheck.analysis.invariants_file import dump_invariants

    dump_invariants(invariants.InvariantSet((inv,)), path)
    return path


def run(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[bytes]:
    command = [*LAUNCHER, "-o", str(tmp_path / "trace"), *options]
    command += ["--", sys.executable, str(PRODUCER), "--steps", "3"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}
    env[environment.TRAINCHECK_DISABLE] = "1"  # the fake job is the only producer
    return subprocess.run(command, capture_output=True, timeout=90, env=env)


def test_violations_are_alerted_and_counted(tmp_path: Path, invariants_file: Path) -> None:
    result = run(tmp_path, "--invariants", str(invariants_file))
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert "zero_grad" in err and " 0 violations" not in err
    assert "Traceback" not in err and "checker error" not in err


def test_fail_on_violation_turns_success_into_1(tmp_path: Path, invariants_file: Path) -> None:
    result = run(tmp_path, "--invariants", str(invariants_file), "--fail-on-violation")
    assert result.returncode == 1, result.stderr.decode()


def test_summary_names_invariants_that_never_applied(tmp_path: Path) -> None:
    """An invariant about something the run never did is "not triggered": the
    summary counts it and names it, since it can be the only sign of a bug that
    silences (an optimizer that never steps) rather than breaks."""
    invariants = pytest.importorskip("traincheck.analysis.invariants")
    violated, never = (
        invariants.make_invariant(
            "FunctionCoverRelation",
            (invariants.APIParam(first), invariants.APIParam(second)),
            None,
            group="func_cover",
            text_description=text,
            num_positive_examples=10,
            num_negative_examples=0,
        )
        for first, second, text in (
            (
                "torch.optim.Optimizer.zero_grad",
                "torch.optim.Optimizer.step",
                "zero_grad is called before every step",
            ),
            (
                "torch.utils.data.DataLoader.__iter__",
                "torch.optim.lr_scheduler.LRScheduler.step",
                "a loader is iterated before every scheduler step",
            ),
        )
    )
    path = tmp_path / "inv.json"
    from traincheck.analysis.invariants_file import dump_invariants

    dump_invariants(invariants.InvariantSet((violated, never)), path)
    err = run(tmp_path, "--invariants", str(path)).stderr.decode()
    assert "2 invariants: 1 failed, 0 passed, 1 not triggered, 0 uncheckable" in err, err
    listed = err.split("not triggered (what they speak of never happened in this run):")[1]
    assert (
        listed.splitlines()[1].strip().endswith("a loader is iterated before every scheduler step")
    )


def test_malformed_invariants_rejected_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "inv.json"
    bad.write_text('{"format": "something-else"}')
    result = run(tmp_path, "--invariants", str(bad))
    err = result.stderr.decode()
    assert result.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "trace").exists()
