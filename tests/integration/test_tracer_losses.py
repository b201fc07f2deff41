"""Tracing never changes what training computes: bit-identical losses, every example.

Starting an interpreter and importing torch costs more than a few training steps,
so the single-process examples all run in one process
(``scripts/examples_in_one_process.py``), once untraced and once under
``traincheck-run``; examples that start processes of their own (the torchrun ones
re-execute themselves, the ``mp.spawn`` ones spawn their ranks) run as their own
processes. Every run goes concurrently on a small pool.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import EXAMPLES, SCRIPTS, cli, python_cmd, run_cli

STEPS = "3"
LINE = re.compile(r"^(?:== \S+|step \d+ loss \S+)$", re.MULTILINE)
EXAMPLE_SCRIPTS = sorted(EXAMPLES.glob("*/*.py"))
DRIVER = SCRIPTS / "examples_in_one_process.py"


def _reexecutes_itself(script: Path) -> bool:
    """Examples that turn themselves into torchrun, or spawn their ranks (the spawned
    processes import the worker from ``__main__``), cannot share a process."""
    text = script.read_text()
    return "os.execv(" in text or "spawn_ranks(" in text


def _losses(command: list[str]) -> list[str]:
    result = run_cli(command, timeout_s=150)
    assert result.returncode == 0, result.stderr
    return LINE.findall(result.stdout)


def _traced(command: list[str], out: Path) -> list[str]:
    return [cli("traincheck-run"), "-o", str(out), "--", *command]


@pytest.mark.timeout(400)
def test_every_example_has_bit_identical_losses_traced(tmp_path: Path) -> None:
    assert EXAMPLE_SCRIPTS, "no bundled examples found"
    shared = [str(s) for s in EXAMPLE_SCRIPTS if not _reexecutes_itself(s)]
    alone = [s for s in EXAMPLE_SCRIPTS if _reexecutes_itself(s)]
    commands = {"in-one-process": python_cmd(DRIVER, STEPS, *shared)}
    for script in alone:
        commands[f"{script.parent.name}-{script.stem}"] = python_cmd(script, "--steps", STEPS)

    def compare(name: str) -> tuple[str, list[str], list[str]]:
        plain = _losses(commands[name])
        traced = _losses(_traced(commands[name], tmp_path / name))
        return name, plain, traced

    with ThreadPoolExecutor(max_workers=2) as pool:
        for name, plain, traced in pool.map(compare, commands):
            if name != "in-one-process":
                # Several ranks may interleave their lines in any order.
                plain, traced = sorted(plain), sorted(traced)
            assert traced == plain, name
            if name == "in-one-process":
                _assert_each_printed_losses(plain, shared)
            else:
                assert any(line.startswith("step") for line in plain), f"{name}: no losses"


def _assert_each_printed_losses(lines: list[str], scripts: list[str]) -> None:
    """Every script of the shared run printed a header followed by its own losses."""
    per_script: dict[str, int] = {}
    current = None
    for line in lines:
        if line.startswith("== "):
            current = line[3:]
            per_script[current] = 0
        elif current is not None:
            per_script[current] += 1
    assert set(per_script) == set(scripts), per_script
    assert all(count > 0 for count in per_script.values()), per_script
