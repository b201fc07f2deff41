"""The CLI scaffold: one line per failure, one meaning per exit code, for all commands."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest

from traincheck.cli import attach, check, infer
from traincheck.cli_scaffold import CommandParser, run_main
from traincheck.errors import (
    EXIT_INTERNAL_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    InvariantsFileError,
)
from traincheck.launcher import cli as launcher_cli
from traincheck.launcher import collect

ENTRY_POINTS: dict[str, Callable[[list[str]], int]] = {
    "traincheck-run": launcher_cli.main,
    "traincheck-collect": collect.main,
    "traincheck-infer": infer.main,
    "traincheck-check": check.main,
    "traincheck-onlinecheck": check.online_main,
    "traincheck-attach": attach.main,
    "traincheck-ps": attach.ps_main,
}
"""Every console script, by the name pyproject.toml gives it."""

BODIES = {
    "traincheck-run": (launcher_cli, "parse_settings"),
    "traincheck-collect": (collect, "parse_settings"),
    "traincheck-infer": (infer, "_run"),
    "traincheck-check": (check, "_run"),
    "traincheck-onlinecheck": (check, "_run"),
    "traincheck-attach": (attach, "_attach_main"),
    "traincheck-ps": (attach, "list_jobs"),
}
"""Something each command calls inside its scaffold, to make it fail."""

MINIMAL_ARGV = {
    "traincheck-infer": ["-f", "t", "-o", "o"],
    "traincheck-check": ["-f", "t", "-i", "i"],
    "traincheck-onlinecheck": ["-f", "t", "-i", "i"],
    "traincheck-attach": ["--list"],
}
"""Arguments each command's parser accepts (the failure comes after parsing)."""

LONG = "x" * 300
"""A path component no file system accepts: every open or stat of it is an OSError."""


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.rstrip("\n")


def _raise(exc: BaseException) -> Callable[[], int]:
    def body() -> int:
        raise exc

    return body


def test_a_user_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main("prog", _raise(InvariantsFileError("inv.json: bad\nreally"))) == 2
    assert _one_line(capsys) == "prog: error: inv.json: bad really"


def test_an_os_error_names_the_path(capsys: pytest.CaptureFixture[str]) -> None:
    error = FileNotFoundError(2, "No such file or directory", "/no/such")
    assert run_main("prog", _raise(error)) == EXIT_USER_ERROR
    assert _one_line(capsys) == "prog: error: /no/such: No such file or directory"


def test_ctrl_c_is_130(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main("prog", _raise(KeyboardInterrupt())) == EXIT_INTERRUPTED == 130
    assert _one_line(capsys) == "prog: interrupted"


def test_a_bug_is_one_line_and_its_own_exit_code(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRAINCHECK_DEBUG", raising=False)
    assert run_main("prog", _raise(RuntimeError("boom"))) == EXIT_INTERNAL_ERROR == 70
    line = _one_line(capsys)
    assert line.startswith("prog: internal error: RuntimeError: boom")
    assert "TRAINCHECK_DEBUG=1" in line


def test_debug_shows_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINCHECK_DEBUG", "1")
    assert run_main("prog", _raise(RuntimeError("boom"))) == EXIT_INTERNAL_ERROR
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: boom" in err
    assert err.rstrip("\n").splitlines()[-1] == "prog: internal error: RuntimeError: boom"


def test_the_body_s_exit_code_and_help_s_exit_pass_through() -> None:
    assert run_main("prog", lambda: 1) == 1
    parser = CommandParser(prog="prog", exit_codes=((1, "violations found"),))
    with pytest.raises(SystemExit) as info:
        run_main("prog", lambda: parser.parse_args(["--help"]) and 0)
    assert info.value.code == 0


def test_the_parser_says_a_mistake_in_one_line_and_lists_the_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = CommandParser(prog="prog", epilog="Example: prog x", exit_codes=((1, "found"),))
    parser.add_argument("--n", type=int)
    assert run_main("prog", lambda: parser.parse_args(["--n", "x"]) and 0) == 2
    assert _one_line(capsys) == "prog: error: argument --n: invalid int value: 'x'"
    help_text = parser.format_help()
    assert help_text.index("Example: prog x") < help_text.index("Exit codes:")
    for code in ("1", "2", "70", "130"):
        assert f"\n  {code}" in help_text


def test_every_console_script_is_covered_here() -> None:
    scripts = {
        ep.name
        for ep in metadata.entry_points(group="console_scripts")
        if ep.name.startswith("traincheck-")
    }
    assert scripts == set(ENTRY_POINTS)


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_every_command_says_a_usage_mistake_in_one_line(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*MINIMAL_ARGV.get(name, []), "--no-such-option"]
    assert ENTRY_POINTS[name](argv) == EXIT_USER_ERROR
    line = _one_line(capsys)
    assert line.startswith(f"{name}: error: ") and "--no-such-option" in line


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_every_command_reports_a_bug_with_exit_70(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRAINCHECK_DEBUG", raising=False)
    module, function = BODIES[name]

    def broken(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(module, function, broken)
    assert ENTRY_POINTS[name](MINIMAL_ARGV.get(name, [])) == EXIT_INTERNAL_ERROR
    line = _one_line(capsys)
    assert line.startswith(f"{name}: internal error: RuntimeError: broken on purpose")


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("traincheck-run", ["-o", LONG, sys.executable, "-c", "pass"]),
        ("traincheck-collect", ["-p", "train.py", "-o", LONG]),
        ("traincheck-infer", ["-f", LONG, "-o", "inv.json"]),
        ("traincheck-check", ["-f", "t", "-i", LONG]),
        ("traincheck-onlinecheck", ["-f", "t", "-i", LONG]),
        ("traincheck-attach", ["-i", LONG, "1"]),
    ],
)
def test_every_command_says_an_unusable_path_in_one_line(
    name: str,
    argv: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("pass\n")
    assert ENTRY_POINTS[name](argv) == EXIT_USER_ERROR
    line = _one_line(capsys)
    assert line.startswith(f"{name}: error: ") and "File name too long" in line


def test_once_the_job_ran_its_exit_code_survives_a_failing_report(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert launcher_cli.after_job(3, _raise(RuntimeError("summary broke"))) == 3
    assert "internal error: RuntimeError: summary broke" in _one_line(capsys)
    assert launcher_cli.after_job(-2, lambda: 5) == 5
