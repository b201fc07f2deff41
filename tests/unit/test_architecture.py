"""Architecture rules that keep the processes decoupled (see docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imports_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.split())


def test_event_schema_does_not_import_torch() -> None:
    modules = _imports_after("import traincheck.events, traincheck.wire")
    assert "torch" not in modules


def test_package_import_does_not_import_torch() -> None:
    modules = _imports_after("import traincheck")
    assert "torch" not in modules


def test_sidecar_store_and_checker_do_not_import_torch() -> None:
    modules = _imports_after("import traincheck.sidecar.store")
    assert "torch" not in modules


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_in_process_package_never_imports_sidecar_or_launcher() -> None:
    forbidden = ("traincheck.sidecar", "traincheck.launcher", "sidecar", "launcher")
    offenders = []
    for path in (REPO / "traincheck").rglob("*.py"):
        for name in _imported_names(path):
            if name.startswith(forbidden):
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert offenders == []


def test_no_pickle_or_eval_anywhere() -> None:
    offenders = []
    for folder in ("traincheck", "sidecar", "launcher"):
        for path in (REPO / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    if node.func.id in {"eval", "exec"}:
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {node.func.id}")
            if "pickle" in _imported_names(path):
                offenders.append(f"{path.relative_to(REPO)} imports pickle")
    assert offenders == []
