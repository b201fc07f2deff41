"""``traincheck-collect``: the published tool's collection interface, on our machinery.

It accepts the seed's options (``--pyscript``, ``--shscript``, ``--use-config
--config FILE.yml`` with underscore keys, ``--modules-to-instr``,
``--models-to-track``, ``--invariants`` for selective tracing, ``--sampling-interval``,
``--warm-up-steps``, ``--output-dir``), turns them into the same
:class:`~traincheck.launcher.settings.RunSettings` ``traincheck-run`` builds, and
calls the same :func:`traincheck.launcher.cli.run`: one code path, one tracer.
CLI flags override the config file. The script is never rewritten or copied
(the tracer is injected at start-up), so ``copy_all_files`` and
``model_tracker_style`` are accepted for compatibility and have nothing to do.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from traincheck.cli_scaffold import CommandParser, run_main
from traincheck.errors import UserError
from traincheck.launcher import cli
from traincheck.launcher.settings import (
    DEFAULT_SIDECAR_TIMEOUT_S,
    JOB_EXIT_CODES,
    RunSettings,
    existing_invariants_file,
    validate_command,
    validate_output_dir,
)
from traincheck.launcher.tracing_options import add_tracing_arguments, tracing_plan

PROG = "traincheck-collect"

CONFIG_KEYS = (
    "pyscript",
    "shscript",
    "modules_to_instr",
    "models_to_track",
    "model_tracker_style",
    "copy_all_files",
    "output_dir",
    "invariants",
    "sampling_interval",
    "warm_up_steps",
)
"""Keys a ``--config`` YAML file may set (each the underscore form of a flag)."""

LIST_KEYS = frozenset({"modules_to_instr", "models_to_track"})
INT_KEYS = frozenset({"sampling_interval", "warm_up_steps"})


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        usage=f"{PROG} (-p SCRIPT | -s SHSCRIPT | --use-config --config FILE) [options] "
        "[-- SCRIPT_ARGS...]",
        description=(
            "Trace a training script (the published TrainCheck's collection interface). "
            "Same machinery as traincheck-run: the script runs unchanged, a sidecar stores "
            "the trace; with --invariants only what those invariants need is traced and "
            "they are checked live."
        ),
        epilog=(
            "Config file (YAML, with --use-config --config FILE): keys "
            + ", ".join(CONFIG_KEYS)
            + ". Flags given on the command line override the file.\n"
            "Default output folder: traincheck_run_<script>_<modules>_<YYYYmmdd_HHMMSS>.\n"
            "Example: traincheck-collect -p train.py --modules-to-instr torch -- --epochs 1"
        ),
        exit_codes=JOB_EXIT_CODES[:1],
    )
    parser.add_argument("-p", "--pyscript", type=Path, help="Python training script to run")
    parser.add_argument("-s", "--shscript", type=Path, help="shell script that starts training")
    parser.add_argument(
        "--use-config", action="store_true", help="read options from the --config file"
    )
    parser.add_argument("--config", type=Path, help="YAML config file (needs --use-config)")
    parser.add_argument("-o", "--output-dir", type=Path, help="trace folder to create")
    parser.add_argument(
        "-i",
        "--invariants",
        type=Path,
        help="invariants file: trace only what they need and check them live",
    )
    parser.add_argument(
        "--model-tracker-style",
        help="accepted for compatibility: state is always tracked by whole-tensor digests",
    )
    parser.add_argument(
        "--copy-all-files",
        action="store_true",
        default=None,
        help="accepted for compatibility: scripts are never rewritten, so nothing is copied",
    )
    add_tracing_arguments(parser, selective_flag=False)
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments for the script")
    return parser


def parse_settings(argv: list[str]) -> RunSettings:
    """Flags, merged over the config file, validated into the settings traincheck-run uses."""
    args = build_parser().parse_args(argv)
    if args.config is not None and not args.use_config:
        raise UserError("--config needs --use-config")
    if args.use_config:
        if args.config is None:
            raise UserError("--use-config needs --config FILE.yml")
        merge_config(args, load_config(args.config))
    command = build_command(args)
    validate_command(command)
    modules = args.modules_to_instr or ["torch"]
    args.modules_to_instr = modules
    invariants = args.invariants
    if invariants is not None:
        invariants = existing_invariants_file(invariants)
    output_dir = validate_output_dir(args.output_dir or default_output_dir(command, modules))
    return RunSettings(
        command=tuple(command),
        output_dir=output_dir,
        invariants=invariants,
        sidecar_timeout_s=DEFAULT_SIDECAR_TIMEOUT_S,
        fail_on_violation=False,
        tracing_plan=tracing_plan(args, invariants, selective=invariants is not None),
        selective=invariants is not None,
    )


def load_config(path: Path) -> dict[str, Any]:
    """The YAML config as a dict of known keys (safe loader: data, never objects)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config {path} must be a mapping of option: value")
    unknown = sorted(str(k) for k in data if k not in CONFIG_KEYS)
    if unknown:
        raise UserError(
            f"config {path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(CONFIG_KEYS)})"
        )
    return data


def merge_config(args: argparse.Namespace, config: dict[str, Any]) -> None:
    """Fill every option the command line left unset from the config."""
    for key, value in config.items():
        if getattr(args, key, None) not in (None, False):
            continue
        if key in LIST_KEYS:
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UserError(f"config key {key} must be a name or a list of names")
        elif key in INT_KEYS:
            if not isinstance(value, int) or isinstance(value, bool):
                raise UserError(f"config key {key} must be an integer")
        elif key in ("pyscript", "shscript", "output_dir", "invariants"):
            value = Path(str(value))
        setattr(args, key, value)


def build_command(args: argparse.Namespace) -> list[str]:
    extra = list(args.script_args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    if (args.pyscript is None) == (args.shscript is None):
        raise UserError("give exactly one of --pyscript and --shscript (or set one in the config)")
    if args.pyscript is not None:
        if not args.pyscript.is_file():
            raise UserError(f"script not found: {args.pyscript}")
        return [sys.executable, str(args.pyscript), *extra]
    if not args.shscript.is_file():
        raise UserError(f"script not found: {args.shscript}")
    return ["bash", str(args.shscript), *extra]


def default_output_dir(command: list[str], modules: list[str]) -> Path:
    """``traincheck_run_<script>_<modules>_<timestamp>``, as the seed documents."""
    script = Path(command[1]).stem if len(command) > 1 else Path(command[0]).name
    libs = "_".join(modules)
    return Path(f"traincheck_run_{script}_{libs}_{time.strftime('%Y%m%d_%H%M%S')}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: the same error handling and run as traincheck-run."""
    args = sys.argv[1:] if argv is None else argv
    return run_main(PROG, lambda: cli.run(parse_settings(args)))


if __name__ == "__main__":
    sys.exit(main())
