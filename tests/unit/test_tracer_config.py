"""``TracerConfig`` is the tracer's one reader of the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import traincheck.tracer
from traincheck.tracer.config import BACKLOG_MAX_BYTES, TracerConfig

TRACER_DIR = Path(traincheck.tracer.__file__).parent


def test_only_the_config_reads_the_environment() -> None:
    """Every setting has one parse and one default: ``TracerConfig``'s."""
    offenders = [
        f"{path.name}:{node.lineno}"
        for path in sorted(TRACER_DIR.rglob("*.py"))
        if path.name != "config.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if (isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb"})
        or (isinstance(node, ast.ImportFrom) and node.module == "os")
    ]
    assert offenders == []


def test_an_empty_environment_means_untraced_with_defaults() -> None:
    config = TracerConfig.from_environ({})
    assert not config.wants_tracing
    assert (config.rank, config.local_rank, config.world_size) == (0, 0, 1)
    assert config.backlog_max_bytes == BACKLOG_MAX_BYTES and not config.rank_assigned


def test_malformed_numbers_take_their_defaults() -> None:
    environ = {
        "TRAINCHECK_ENDPOINT": "ipc:///tmp/x.sock",
        "RANK": "two",
        "WORLD_SIZE": "",
        "TRAINCHECK_BACKLOG_BYTES": "-5",
    }
    config = TracerConfig.from_environ(environ)
    assert config.wants_tracing and config.rank_assigned
    assert (config.rank, config.world_size) == (0, 1)
    assert config.backlog_max_bytes == BACKLOG_MAX_BYTES
    assert TracerConfig.from_environ({"TRAINCHECK_BACKLOG_BYTES": "0"}).backlog_max_bytes == 0


def test_disable_wins_over_an_endpoint() -> None:
    environ = {"TRAINCHECK_ENDPOINT": "ipc:///tmp/x.sock", "TRAINCHECK_DISABLE": "1"}
    assert not TracerConfig.from_environ(environ).wants_tracing
