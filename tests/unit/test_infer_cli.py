"""``traincheck-infer``: summary, output file, and one-line user errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tracegen import LoopSpec, write_trace

from traincheck.analysis.invariants_file import load_invariants
from traincheck.cli.infer import main


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("traces")
    return [
        write_trace(root / "a", LoopSpec(steps=10, seed=1)),
        write_trace(root / "b", LoopSpec(steps=7, seed=2)),
    ]


def test_infer_writes_file_and_summary(traces, tmp_path, capsys) -> None:
    out = tmp_path / "inv.json"
    assert main(["-f", *map(str, traces), "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "invariants from 2 trace(s)" in stdout
    assert "kept  rejected" in stdout
    cells = [line.split() for line in stdout.splitlines()[2:] if line.startswith("  ")]
    kept = {row[0]: int(row[1]) for row in cells if len(row) > 1 and row[1].isdigit()}
    assert kept["APIContainRelation"] > 0 and sum(kept.values()) == len(load_invariants(out))
    assert "too few positives" in stdout or "counter-examples" in stdout, "rejections and why"
    assert len(load_invariants(out)) > 0
    assert not Path(f"{out}.failed").exists()


def test_debug_writes_rejections(traces, tmp_path) -> None:
    out = tmp_path / "inv.json"
    assert main(["-f", str(traces[0]), "-o", str(out), "--debug"]) == 0
    rows = [json.loads(line) for line in Path(f"{out}.failed").read_text().splitlines()]
    assert rows and all("reason" in r for r in rows)


def test_enable_relation(traces, tmp_path) -> None:
    out = tmp_path / "inv.json"
    assert (
        main(["-f", str(traces[0]), "-o", str(out), "--enable-relation", "APIContainRelation"]) == 0
    )
    assert {i.relation for i in load_invariants(out)} == {"APIContainRelation"}


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda t, tmp: ["-f", str(tmp / "missing"), "-o", str(tmp / "i.json")], "not found"),
        (lambda t, tmp: ["-f", str(tmp), "-o", str(tmp / "i.json")], "is not a TrainCheck trace"),
        (lambda t, tmp: ["-f", str(t[0])], "required: -o/--output"),
        (lambda t, tmp: ["-f", str(t[0]), "-o", str(tmp / "no" / "x.json")], "does not exist"),
        (lambda t, tmp: ["-f", str(t[0]), "-o", str(tmp)], "is a directory"),
        (
            lambda t, tmp: ["-f", str(t[0]), "-o", str(tmp / "i.json"), "--disable-relation", "X"],
            "unknown relation X",
        ),
    ],
)
def test_user_errors_are_one_line_exit_2(traces, tmp_path, capsys, make_args, message) -> None:
    assert main(make_args(traces, tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("traincheck-infer: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_nothing_is_written_to_the_working_directory_unless_asked(
    traces, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["-f", str(traces[0])]) == 2
    assert list(tmp_path.iterdir()) == []


def test_damaged_segment_is_a_warning(traces, tmp_path, capsys) -> None:
    damaged = write_trace(tmp_path / "d", LoopSpec(steps=6, seed=5))
    segment = next(damaged.glob("segment-*.tcs"))
    segment.write_bytes(segment.read_bytes()[:-10])
    assert main(["-f", str(damaged), "-o", str(tmp_path / "inv.json")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("traincheck-infer: warning: ") and err.count("\n") == 1


def test_a_trace_given_twice_is_read_once(traces, tmp_path, capsys) -> None:
    """Read twice, one run would count as two healthy runs: its evidence doubled."""
    once, twice = tmp_path / "once.json", tmp_path / "twice.json"
    assert main(["-f", str(traces[0]), "-o", str(once)]) == 0
    capsys.readouterr()
    assert main(["-f", str(traces[0]), f"{traces[0]}/", "-o", str(twice)]) == 0
    captured = capsys.readouterr()
    assert "given twice; read once" in captured.err
    assert "invariants from 1 trace(s)" in captured.out
    assert once.read_text() == twice.read_text()
