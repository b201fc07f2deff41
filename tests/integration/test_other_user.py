"""Another local user, for real: ``nobody`` plants what an attacker on a shared machine
would, and ``traincheck-run`` neither uses it nor lets it stop the job (issue 11).

The planting is done by processes running as uid 65534 (``nobody``, present on every
Linux), not by ``chown``: the directory and the link are another user's in every way
the kernel knows. Only root can start a process as another user, so the tests skip
elsewhere, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli

NOBODY = 65534
JOB = [sys.executable, "-c", "print('job ran'); raise SystemExit(3)"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to start a process as another local user"
)


def _as_nobody(*argv: str) -> None:
    """Run a coreutils command as ``nobody`` (no Python: the venv may not be readable)."""
    tool = shutil.which(argv[0])
    assert tool is not None, f"{argv[0]} not found"
    subprocess.run([tool, *argv[1:]], user=NOBODY, group=NOBODY, check=True, timeout=60)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A world-writable sticky directory, like /tmp, short enough for a socket path."""
    path = Path(tempfile.mkdtemp(prefix="tc-shared-", dir="/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run(argv: list[str], tmpdir: Path) -> subprocess.CompletedProcess[str]:
    """``traincheck-run`` with TMPDIR on the shared directory and no XDG_RUNTIME_DIR:
    the predictable per-user directory is then one another user can create first."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCHECK_")}
    environ.pop("XDG_RUNTIME_DIR", None)
    environ["TMPDIR"] = str(tmpdir)
    return subprocess.run(
        [cli("traincheck-run"), *argv], capture_output=True, text=True, env=environ, timeout=120
    )


def test_a_per_user_directory_planted_by_another_user_does_not_stop_the_job(
    shared_tmp: Path, tmp_path: Path
) -> None:
    planted = shared_tmp / f"traincheck-{os.getuid()}"
    _as_nobody("mkdir", "-m", "0777", str(planted))
    assert planted.stat().st_uid == NOBODY
    out = tmp_path / "trace"
    result = _run(["-o", str(out), "--", *JOB], shared_tmp)
    assert result.returncode == 3, result.stderr  # the job's own code
    assert "job ran" in result.stdout
    assert (out / "run.json").is_file()
    assert list(planted.iterdir()) == [], "nothing of ours in another user's directory"


def test_an_output_directory_planted_by_another_user_is_refused_and_nothing_is_overwritten(
    shared_tmp: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("secret\n")
    victim.chmod(0o600)
    planted = shared_tmp / "out"
    _as_nobody("mkdir", "-m", "0777", str(planted))
    _as_nobody("ln", "-s", str(victim), str(planted / "run.json"))
    result = _run(["-o", str(planted), "--", *JOB], shared_tmp)
    assert result.returncode == 2, result.stderr  # a user error, before the job starts
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "another user" in result.stderr or "other users" in result.stderr, result.stderr
    assert "job ran" not in result.stdout
    assert victim.read_text() == "secret\n"
    assert (planted / "run.json").is_symlink(), "the planted link is left as it was"
