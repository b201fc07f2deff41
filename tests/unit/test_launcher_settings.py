"""traincheck-run options, validation, environment and run directory (no processes)."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

from traincheck import environment
from traincheck.errors import UserError
from traincheck.launcher import rundir
from traincheck.launcher.job import bootstrap_dir, exit_status, job_environment
from traincheck.launcher.settings import default_output_dir, parse_settings, python_script
from traincheck.launcher.summary import read_tracer_counters
from traincheck.records import ProducerSummary, RunCounters
from traincheck.run_summary import summary_lines

PY = sys.executable


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text("print('hi')\n")
    return path


def test_command_after_double_dash_keeps_its_own_options(script: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    settings = parse_settings(["-o", str(out), "--", PY, str(script), "--lr", "0.1", "-h"])
    assert settings.command == (PY, str(script), "--lr", "0.1", "-h")
    assert settings.output_dir == out.resolve()
    assert settings.sidecar_timeout_s == 30 and not settings.fail_on_violation


def test_command_without_double_dash(script: Path, tmp_path: Path) -> None:
    settings = parse_settings(["--fail-on-violation", PY, str(script), "--epochs", "2"])
    assert settings.command == (PY, str(script), "--epochs", "2")
    assert settings.fail_on_violation
    assert settings.output_dir.name.startswith("traincheck_run_train_")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no command given"),
        (["--"], "no command given"),
        ([PY, "missing_script.py"], "script not found: missing_script.py"),
        (["no-such-program-xyz"], "command not found: no-such-program-xyz"),
        (["--sidecar-timeout-s", "0", PY, "-c", "pass"], "--sidecar-timeout-s"),
        (["--bogus", PY], "unrecognized arguments"),
    ],
)
def test_user_errors_are_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(UserError) as info:
        parse_settings(argv)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_invariants_file_must_exist_and_is_parsed_by_the_sidecar_alone(
    script: Path, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match="not found"):
        parse_settings(["-i", str(tmp_path / "nope.json"), PY, str(script)])
    bad = tmp_path / "inv.json"
    bad.write_text("{not json")  # the sidecar parses it once, before the job starts
    settings = parse_settings(["-i", str(bad), "--selective", PY, str(script)])
    assert settings.invariants == bad.resolve() and settings.selective
    assert settings.tracing_plan is None  # the flags ask for nothing: the sidecar narrows it


def test_output_dir_must_be_new_or_empty(script: Path, tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "run.json").write_text("{}")
    with pytest.raises(UserError, match="not empty"):
        parse_settings(["-o", str(used), PY, str(script)])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert parse_settings(["-o", str(empty), PY, str(script)]).output_dir == empty.resolve()
    with pytest.raises(UserError, match="not a directory"):
        parse_settings(["-o", str(script), PY, str(script)])


def test_output_dir_another_user_could_have_planted_is_refused(
    script: Path, tmp_path: Path
) -> None:
    """A link, a loop, a directory others may write into or that is not ours: we would
    write the user's trace where someone else decides."""
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(UserError, match="symbolic link"):
        parse_settings(["-o", str(tmp_path / "link"), PY, str(script)])
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    with pytest.raises(UserError, match="cannot use output directory"):
        parse_settings(["-o", str(tmp_path / "loop1" / "x"), PY, str(script)])
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UserError, match="writable by other users"):
        parse_settings(["-o", str(shared), PY, str(script)])
    if os.getuid() == 0:  # only root can give a directory to another user
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        os.chown(theirs, 4321, 4321)
        with pytest.raises(UserError, match="belongs to another user"):
            parse_settings(["-o", str(theirs), PY, str(script)])


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["python", "t.py", "x"], "t.py"),
        (["python3.11", "-u", "-W", "ignore", "t.py"], "t.py"),
        (["python", "-m", "torch.distributed.run", "t.py"], None),
        (["python", "-c", "pass"], None),
        (["torchrun", "t.py"], None),
        (["python"], None),
    ],
)
def test_python_script_detection(command: list[str], expected: str | None) -> None:
    assert python_script(command) == expected


def test_default_output_dir_names_the_script_or_module() -> None:
    assert default_output_dir(["python", "dir/train.py"]).name.startswith("traincheck_run_train_")
    assert default_output_dir(["python", "-m", "pkg.mod"]).name.startswith("traincheck_run_mod_")


def test_job_environment_puts_bootstrap_first(tmp_path: Path) -> None:
    env = job_environment(
        {"PYTHONPATH": "/user/lib", "HOME": "/h"},
        endpoint="ipc://x",
        run_id="r",
        trace_dir=tmp_path,
    )
    boot = str(bootstrap_dir())
    assert env["PYTHONPATH"] == boot + os.pathsep + "/user/lib"
    assert env[environment.TRAINCHECK_ENDPOINT] == "ipc://x"
    assert env[environment.TRAINCHECK_RUN_ID] == "r"
    assert env[environment.TRAINCHECK_TRACE_DIR] == str(tmp_path)
    assert env[environment.TRAINCHECK_BOOTSTRAP_DIR] == boot and env["HOME"] == "/h"
    assert Path(boot).is_dir()
    assert job_environment({}, endpoint="e", run_id="r", trace_dir=tmp_path)["PYTHONPATH"] == boot


def test_exit_status_is_shell_style() -> None:
    assert exit_status(0) == 0 and exit_status(3) == 3
    assert exit_status(-signal.SIGINT) == 130 and exit_status(-signal.SIGKILL) == 137


def test_run_directory_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    run = rundir.create_run_directory("run-1")
    assert run.path.parent.parent == tmp_path
    for path in (run.path, run.path.parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert run.endpoint.startswith("ipc://") and len(run.endpoint) < rundir.MAX_SOCKET_PATH + 6
    run.remove()
    assert not run.path.exists() and run.path.parent.exists()


def test_run_directory_tightens_a_loose_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    parent = tmp_path / f"traincheck-{os.getuid()}"
    parent.mkdir(mode=0o755)
    rundir.create_run_directory("run-2").remove()
    assert stat.S_IMODE(parent.stat().st_mode) == 0o700


def test_a_planted_per_user_directory_is_never_used_nor_stops_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user may create ``traincheck-<uid>`` first (a link, or a directory of
    theirs): we write nothing there, and the job still runs, from a directory of
    its own when every predictable one is taken."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = tmp_path / f"traincheck-{os.getuid()}"
    planted.symlink_to(elsewhere)
    run = rundir.create_run_directory("run-3")
    try:
        assert not run.path.is_relative_to(tmp_path) and list(elsewhere.iterdir()) == []
    finally:
        run.remove()
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(rundir.tempfile, "tempdir", str(temp))
    monkeypatch.setattr(rundir, "per_user_dir", lambda base: planted)  # every base taken
    run = rundir.create_run_directory("run-4")
    try:
        # mkdtemp in the temp dir (or /tmp, when the socket path would be too long)
        assert run.path.parent in (temp, Path("/tmp"))
        assert run.path.name.startswith("traincheck-run-4-")
        assert stat.S_IMODE(run.path.stat().st_mode) == 0o700
        assert list(elsewhere.iterdir()) == []
    finally:
        run.remove()


def test_long_runtime_dir_falls_back_to_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / ("x" * 120)))
    run = rundir.create_run_directory(rundir.new_run_id())
    try:
        assert len(run.endpoint) - len("ipc://") < rundir.MAX_SOCKET_PATH
    finally:
        run.remove()


def test_tracer_counters_are_summed_and_bad_files_named(tmp_path: Path) -> None:
    counters = {"events_sent": 10, "events_dropped": 2, "batches_sent": 3, "batches_dropped": 1}
    (tmp_path / "tracer-1.json").write_text(json.dumps({"pid": 1, **counters}))
    (tmp_path / "tracer-2.json").write_text(json.dumps({"pid": 2, **counters}))
    (tmp_path / "tracer-3.json").write_text("{torn")
    totals = read_tracer_counters(tmp_path)
    assert (totals.processes, totals.events_sent, totals.events_dropped) == (2, 20, 4)
    assert totals.unreadable == ["tracer-3.json"]


def test_summary_lines_mention_what_matters(tmp_path: Path) -> None:
    summary = RunCounters(
        events_received=5,
        batches_received=2,
        events_dropped=1,
        batches_missing=1,
        rejected=1,
        rejected_reasons=["bad"],
        violations=3,
        producers=[ProducerSummary(pid=1, rank=0)],
        status="killed",
        write_errors=[],
    )
    text = "\n".join(summary_lines(summary, tmp_path))
    assert "5 events in 2 batches from 1 process" in text
    assert "3 violations" in text and "rejected: bad" in text and str(tmp_path) in text
