"""The wheel installs sidecar/ and launcher/ under traincheck., never as top-level names."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_maps_folders_under_traincheck(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    # Every module of the three source folders, under its import path.
    sources = {
        "traincheck": "traincheck",
        "sidecar": "traincheck/sidecar",
        "launcher": "traincheck/launcher",
    }
    expected = {
        f"{prefix}/{path.relative_to(REPO / folder).as_posix()}"
        for folder, prefix in sources.items()
        for path in (REPO / folder).rglob("*.py")
    }
    assert len(expected) > 50
    assert sorted(expected - set(names)) == []
    for required in (
        "traincheck/events.py",
        "traincheck/bootstrap/sitecustomize.py",
        "traincheck/sidecar/__main__.py",
        "traincheck/sidecar/store.py",
        "traincheck/launcher/cli.py",
        "traincheck/cli_scaffold.py",
        "traincheck/cli/check.py",
        "traincheck/analysis/checker.py",
    ):
        assert required in names
    top_level = {name.split("/")[0] for name in names if "/" in name}
    assert not top_level & {"sidecar", "launcher"}
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "traincheck-run = traincheck.launcher.cli:main" in text


def test_editable_install_has_no_generic_top_level_names() -> None:
    code = (
        "import importlib.util as u, traincheck.sidecar, traincheck.launcher;"
        "print(u.find_spec('sidecar'), u.find_spec('launcher'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd="/",
    )
    assert out.stdout.split() == ["None", "None"]
