"""traincheck-collect options: config file, CLI overrides, output naming (no processes)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from traincheck.launcher.collect import main, parse_settings


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "train.py"
    path.write_text("print('hi')\n")
    return path


def test_pyscript_runs_with_this_interpreter_and_script_args(script: Path) -> None:
    settings = parse_settings(["-p", str(script), "--", "--epochs", "1"])
    assert settings.command == (sys.executable, str(script), "--epochs", "1")
    assert settings.tracing_plan is None


def test_default_output_folder_names_script_modules_and_time(script: Path) -> None:
    settings = parse_settings(["-p", str(script), "--modules-to-instr", "torch", "mylib"])
    assert re.fullmatch(r"traincheck_run_train_torch_mylib_\d{8}_\d{6}", settings.output_dir.name)
    default = parse_settings(["-p", str(script)])
    assert re.fullmatch(r"traincheck_run_train_torch_\d{8}_\d{6}", default.output_dir.name)


def test_config_file_with_cli_override(script: Path, tmp_path: Path) -> None:
    config = tmp_path / "collect.yml"
    config.write_text(
        f"pyscript: {script}\n"
        "modules_to_instr: [torch.nn.functional]\n"
        "models_to_track: Net\n"
        "sampling_interval: 4\n"
        "copy_all_files: true\n"
        "output_dir: from_config\n"
    )
    settings = parse_settings(
        ["--use-config", "--config", str(config), "--sampling-interval", "2", "-o", "from_cli"]
    )
    assert settings.command[1] == str(script)
    assert settings.output_dir.name == "from_cli"
    plan = settings.tracing_plan
    assert plan is not None
    assert plan.sampling_interval == 2
    assert plan.modules_to_instr == ("torch.nn.functional",)
    assert plan.models_to_track == ("Net",)


@pytest.mark.parametrize(
    "config_text, message",
    [("nonsense_key: 1\n", "unknown key"), ("sampling_interval: many\n", "integer")],
)
def test_bad_config_is_one_line_and_exit_2(
    script: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], config_text: str, message: str
) -> None:
    config = tmp_path / "bad.yml"
    config.write_text(f"pyscript: {script}\n{config_text}")
    assert main(["--use-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_exactly_one_script_is_required(script: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "--pyscript" in capsys.readouterr().err
    assert main(["-p", str(script), "-s", str(script)]) == 2


def test_module_depth_flag_reaches_the_plan(script: Path) -> None:
    plan = parse_settings(["--pyscript", str(script), "--module-depth", "1"]).tracing_plan
    assert plan is not None and plan.module_depth == 1
    assert (
        parse_settings(["--pyscript", str(script)]).tracing_plan is None
    )  # every depth: the default


def test_negative_module_depth_is_one_line_and_exit_2(
    script: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--pyscript", str(script), "--module-depth", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--module-depth" in err and err.count("\n") == 1
