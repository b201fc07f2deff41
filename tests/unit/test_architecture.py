"""Architecture rules that keep the processes decoupled (see docs/architecture.md).

The import graph is read from the source with ``ast``: every ``import`` statement
counts, at module level, inside functions and under ``TYPE_CHECKING`` alike, so a
cycle cannot hide behind a deferred import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDERS = {
    "traincheck": "traincheck",
    "sidecar": "traincheck.sidecar",
    "launcher": "traincheck.launcher",
}

TRACER_SIDE = ("traincheck.tracer", "traincheck.bootstrap")
ANALYSIS = "traincheck.analysis"
SIDECAR = "traincheck.sidecar"
LAUNCHER = "traincheck.launcher"
CLI = "traincheck.cli"


def _module_name(folder: str, path: Path) -> str:
    parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([FOLDERS[folder], *parts])


def _sources() -> dict[str, Path]:
    modules = {}
    for folder in FOLDERS:
        for path in (REPO / folder).rglob("*.py"):
            modules[_module_name(folder, path)] = path
    return modules


SOURCES = _sources()


def _resolve(name: str) -> str | None:
    """The project module an imported name lands in (``a.b.C`` -> ``a.b``), or None."""
    while name:
        if name in SOURCES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports_of(module: str) -> set[str]:
    path = SOURCES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return imports_in(path.read_text(), module, package)


def imports_in(source: str, module: str, package: str) -> set[str]:
    """The project modules that ``source`` (module ``module``) imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # ``from pkg import mod`` imports mod; ``from mod import name`` imports mod.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in SOURCES else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            resolved = _resolve(target)
            if resolved is not None and resolved != module:
                found.add(resolved)
    return found


GRAPH = {module: _imports_of(module) for module in SOURCES}


def _is_in(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(sources: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if _is_in(module, *sources)
        for target in targets
        if _is_in(target, *forbidden)
    )


def test_the_graph_sees_the_packages() -> None:
    """Guards the rules below against an empty graph (a moved folder, a broken walk)."""
    assert "traincheck.tracer.hooks" in GRAPH
    assert "traincheck.analysis.checker" in GRAPH
    assert "traincheck.sidecar.service" in GRAPH
    assert "traincheck.launcher.cli" in GRAPH
    assert "traincheck.analysis.relations.base" in GRAPH["traincheck.analysis.checker"]


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every back edge of a depth-first walk, as the path it closes."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_import_cycle_anywhere() -> None:
    cycles = find_cycles(GRAPH)
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle_closed_by_a_deferred_import() -> None:
    """The two halves of the cycle test: deferred imports are edges, back edges are cycles."""
    source = "import os\n\ndef f():\n    from traincheck.analysis import checker\n"
    assert imports_in(source, "traincheck.x", "traincheck") == {"traincheck.analysis.checker"}
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_training_process_side_never_imports_analysis_sidecar_launcher_or_cli() -> None:
    assert _violations(TRACER_SIDE, (ANALYSIS, SIDECAR, LAUNCHER, CLI)) == []


def test_shared_contracts_import_only_shared_contracts() -> None:
    """Core modules (events, wire, records...) are below every process's own code."""
    core = tuple(
        m
        for m in SOURCES
        if not _is_in(m, *TRACER_SIDE, ANALYSIS, SIDECAR, LAUNCHER, CLI) and m != "traincheck"
    )
    assert core, "no shared contract modules found"
    assert _violations(core, (*TRACER_SIDE, ANALYSIS, SIDECAR, LAUNCHER, CLI)) == []


def test_analysis_never_imports_the_tracer_or_a_process() -> None:
    assert _violations((ANALYSIS,), (*TRACER_SIDE, SIDECAR, LAUNCHER, CLI)) == []


def test_sidecar_never_imports_the_tracer_launcher_or_cli() -> None:
    assert _violations((SIDECAR,), (*TRACER_SIDE, LAUNCHER, CLI)) == []


def test_launcher_imports_no_sidecar_internals_no_tracer_no_cli() -> None:
    """The launcher starts the sidecar as a process and reads its typed records."""
    assert _violations((LAUNCHER,), (*TRACER_SIDE, SIDECAR, CLI)) == []


def test_offline_tools_never_import_the_tracer_or_launcher() -> None:
    assert _violations((CLI,), (*TRACER_SIDE, LAUNCHER)) == []


def _imports_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.split())


def test_event_schema_does_not_import_torch() -> None:
    modules = _imports_after("import traincheck.events, traincheck.wire")
    assert "traincheck.events" in modules and "torch" not in modules


def test_package_import_does_not_import_torch() -> None:
    modules = _imports_after("import traincheck")
    assert "traincheck" in modules and "torch" not in modules


def test_sidecar_analysis_and_offline_tools_do_not_import_torch() -> None:
    """The sidecar reads events, never tensors: none of its code may pull torch in."""
    wanted = [
        "traincheck.sidecar.service",
        "traincheck.sidecar.store",
        "traincheck.analysis.checker",
        "traincheck.analysis.infer_engine",
        "traincheck.analysis.relations.known",
        "traincheck.cli.check",
        "traincheck.cli.infer",
        "traincheck.cli.attach",
        "traincheck.launcher.cli",
    ]
    modules = _imports_after("import " + ", ".join(wanted))
    assert set(wanted) <= modules
    assert "torch" not in modules


def test_no_pickle_or_eval_anywhere() -> None:
    offenders = []
    for module, path in SOURCES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in {"eval", "exec"}:
                    offenders.append(f"{module}:{node.lineno} {node.func.id}")
            names = (
                ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module])
                if isinstance(node, (ast.Import, ast.ImportFrom))
                else []
            )
            if any(n and n.split(".")[0] in {"pickle", "cPickle", "dill"} for n in names):
                offenders.append(f"{module}:{node.lineno} imports pickle")
    assert offenders == []
