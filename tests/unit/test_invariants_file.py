"""The invariants file: round trip, published JSON Lines, and every way it can be wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from traincheck.analysis import invariants_file as inv_mod
from traincheck.analysis.invariants import APIParam, InvariantSet, VarTypeParam, make_invariant
from traincheck.analysis.invariants_file import dump_invariants, load_invariants
from traincheck.analysis.preconditions import Clause, Precondition
from traincheck.errors import InvariantsFileError

SEED_INVARIANT = {
    "text_description": "zero_grad contains VarChangeEvent",
    "relation": "APIContainRelation",
    "params": [
        {"param_type": "APIParam", "api_full_name": "torch.optim.optimizer.Optimizer.zero_grad"},
        {
            "param_type": "VarTypeParam",
            "var_type": "torch.nn.Parameter",
            "attr_name": "grad",
            "pre_value": "non_zero",
            "post_value": None,
        },
    ],
    "precondition": {
        "parent_func_call_pre": {
            "inverted": True,
            "preconditions": [
                {"clauses": [{"type": "constant", "prop_name": "meta_vars.step",
                              "additional_path": "None", "prop_dtype": "int", "values": [0]}]},
                {"clauses": [{"type": "constant", "prop_name": "meta_vars.stage",
                              "additional_path": "None", "prop_dtype": "str",
                              "values": ["init", "testing"]}]},
            ],
        }
    },
    "num_positive_examples": 200,
    "num_negative_examples": 1,
}  # fmt: skip


def _sample_set() -> InvariantSet:
    pre = Precondition(((Clause("constant", "meta_vars.step", "int", (0,)),),), inverted=True)
    return InvariantSet(
        (
            make_invariant(
                "APIContainRelation",
                (APIParam("torch.optim.Optimizer.zero_grad"),
                 VarTypeParam("torch.nn.Parameter", "grad", "non_zero", None)),
                pre, group="parent_func_call_pre", text_description="zg",
                num_positive_examples=30, num_negative_examples=2,
            ),
            make_invariant(
                "FunctionCoverRelation",
                (APIParam("torch.optim.Optimizer.zero_grad"),
                 APIParam("torch.optim.Optimizer.step")),
                None, group="func_cover", text_description="cover",
                num_positive_examples=32, num_negative_examples=0,
            ),
        )
    )  # fmt: skip


def test_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "inv.json"
    original = _sample_set()
    dump_invariants(original, path)
    loaded = load_invariants(path)
    assert loaded == original
    dump_invariants(loaded, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()


def test_ids_are_stable_and_content_based() -> None:
    a, b = _sample_set(), _sample_set()
    assert [i.id for i in a] == [i.id for i in b]
    assert len({i.id for i in a}) == 2


def test_published_json_lines_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "inv.jsonl"
    second = {**SEED_INVARIANT, "precondition": "Unconditional"}
    path.write_text(json.dumps(SEED_INVARIANT) + "\n" + json.dumps(second) + "\n")
    loaded = load_invariants(path)
    assert len(loaded) == 2
    first = loaded.invariants[0]
    assert first.precondition is not None and first.precondition.inverted
    assert first.precondition.holds({"meta_vars.step": 5, "meta_vars.stage": "train"})
    assert not first.precondition.holds({"meta_vars.step": 5, "meta_vars.stage": "init"})
    assert loaded.invariants[1].precondition is None


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inv.json"
    path.write_text(text)
    return path


def _doc(*invariants: object) -> str:
    return json.dumps(
        {"format": "traincheck-invariants", "format_version": 1, "invariants": list(invariants)}
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json at all", "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"format": "other"}', "not a TrainCheck invariants file"),
        ('{"format": "traincheck-invariants", "format_version": 9}', "format_version 9"),
        (
            '{"format": "traincheck-invariants", "format_version": 1, "invariants": {}}',
            "must be a list",
        ),
        (_doc({**SEED_INVARIANT, "relation": "MagicRelation"}), "unknown relation 'MagicRelation'"),
        (_doc({**SEED_INVARIANT, "params": "x"}), "'params' must be a list"),
        (_doc({**SEED_INVARIANT, "params": [SEED_INVARIANT["params"][0]]}), "needs params"),
        (_doc({**SEED_INVARIANT, "num_positive_examples": "many"}), "non-negative integers"),
        (_doc({**SEED_INVARIANT, "precondition": 7}), "'precondition' must be"),
        (_doc(5), "invariant #1: not a JSON object"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper"),
        ("[" * 100 + "]" * 100, "nested deeper"),
        (json.dumps(SEED_INVARIANT) + "\n{broken\n", "line 2: not JSON"),
    ],
)
def test_malformed_files_raise_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvariantsFileError, match=message) as info:
        load_invariants(_write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvariantsFileError, match="not found"):
        load_invariants(tmp_path / "nope.json")


def test_directory_and_binary(tmp_path: Path) -> None:
    with pytest.raises(InvariantsFileError, match="not a file"):
        load_invariants(tmp_path)
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvariantsFileError, match="UTF-8"):
        load_invariants(tmp_path / "bin")


def test_oversized_file_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inv_mod, "MAX_FILE_BYTES", 10)
    with pytest.raises(InvariantsFileError, match="larger than"):
        load_invariants(_write(tmp_path, _doc()))


def test_nothing_in_the_file_is_evaluated(tmp_path: Path) -> None:
    evil = json.loads(json.dumps(SEED_INVARIANT))
    clause = evil["precondition"]["parent_func_call_pre"]["preconditions"][0]["clauses"][0]
    clause["prop_dtype"] = "__import__('os').system('false')"
    with pytest.raises(InvariantsFileError, match="unknown prop_dtype"):
        load_invariants(_write(tmp_path, _doc(evil)))


def test_hints_round_trip_and_are_validated(tmp_path: Path) -> None:
    from traincheck.analysis.invariants import VarNameParam

    params = (
        APIParam("torch.optim.Optimizer.step"),
        VarNameParam("torch.nn.Parameter", "Net.fc.weight", "data"),
    )
    hinted, plain = (
        make_invariant(
            "VarPeriodicChangeRelation",
            params,
            None,
            group="var_change",
            text_description="Net.fc.weight.data changes at every torch.optim.Optimizer.step",
            num_positive_examples=40,
            num_negative_examples=0,
            hints=hints,
        )
        for hints in ((("first_update_within", 1),), ())
    )
    assert hinted.id != plain.id and "hints" not in plain.to_json()
    path = tmp_path / "inv.json"
    dump_invariants(InvariantSet((hinted,)), path)
    loaded = load_invariants(path).invariants[0]
    assert loaded == hinted and loaded.hint("first_update_within") == 1
    data = json.loads(path.read_text())
    items = data["invariants"] if isinstance(data, dict) else data
    items[0]["hints"] = {"first_update_within": "soon"}
    path.write_text(json.dumps(data))
    with pytest.raises(InvariantsFileError, match="hints"):
        load_invariants(path)
