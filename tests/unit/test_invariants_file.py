"""The invariants file: round trip, published JSON Lines, and every way it can be wrong."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

import pytest
from tracegen import LoopSpec, stored_events

from traincheck.analysis import invariants_file as inv_mod
from traincheck.analysis.infer_engine import infer_from_streams
from traincheck.analysis.invariants import APIParam, InvariantSet, VarTypeParam, make_invariant
from traincheck.analysis.invariants_file import dump_invariants, load_invariants
from traincheck.analysis.preconditions import Clause, Precondition
from traincheck.analysis.relations.known import get_relation, relation_names
from traincheck.analysis.relations.param_shape import param_classes, shape_text
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
        (
            _doc({**SEED_INVARIANT, "id": "x"}, {**SEED_INVARIANT, "id": "x"}),
            "invariant #2 has the id 'x' of invariant #1",
        ),
        (
            _doc({**SEED_INVARIANT, "num_positive_examples": 1}).replace(
                '"num_positive_examples": 1', '"num_positive_examples": ' + "9" * 5001
            ),
            "not usable JSON",
        ),
        (_doc({**SEED_INVARIANT, "text_description": "\ud800"}), "lone surrogate"),
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


API = {"param_type": "APIParam", "api_full_name": "torch.optim.Optimizer.step"}


def _var(attr: str, pre: str | None = None, post: str | None = None) -> dict[str, object]:
    return {"param_type": "VarTypeParam", "var_type": "torch.nn.Parameter", "attr_name": attr,
            "pre_value": pre, "post_value": post}  # fmt: skip


def _value(role: str, prop: str, value: object) -> dict[str, object]:
    return {"param_type": "ValueParam", "role": role, "name": "input", "prop": prop, "value": value}


def _named(attr: str) -> dict[str, object]:
    return {"param_type": "VarNameParam", "var_type": "torch.nn.Parameter",
            "var_name": "Net.fc1.weight", "attr_name": attr}  # fmt: skip


def _state(attr: str, value: object) -> dict[str, object]:
    return {"param_type": "ValueParam", "role": "state", "name": attr, "prop": "value",
            "value": value}  # fmt: skip


@pytest.mark.parametrize(
    ("relation", "params", "message"),
    [
        ("APIContainRelation", [API], "APIContainRelation needs params "
         "[APIParam, APIParam | VarTypeParam]"),
        ("APIContainRelation", [API, _var("weight")], "APIContainRelation: attribute 'weight' "
         "is not tracked (expected 'data' or 'grad')"),
        ("FunctionLeadRelation", [API, _var("data")], "FunctionLeadRelation needs params "
         "[APIParam, APIParam]"),
        ("SingleUpdateRelation", [API, _var("data")], "SingleUpdateRelation needs params "
         "[APIParam, VarTypeParam, APIParam]"),
        ("VarPeriodicChangeRelation", [API, _var("data")], "VarPeriodicChangeRelation needs "
         "params [APIParam, VarNameParam]"),
        ("ConsistencyRelation", [API, _var("grad")], "ConsistencyRelation: attribute 'grad' "
         "is not tracked (expected 'data')"),
        ("StateAtCallRelation", [API, _var("data", "present", "anything")],
         "StateAtCallRelation: attribute 'data' is not tracked (expected 'grad')"),
        ("StateAtCallRelation", [API, _var("grad", "present", "None")],
         "StateAtCallRelation: exactly one of pre_value/post_value must be 'anything'"),
        ("ConsistentInputRelation", [API, _value("output", "dtype", "torch.float32")],
         "ConsistentInputRelation: the ValueParam's role must be 'input'"),
        ("ConsistentInputOutputRelation", [API, _value("input", "dtype", "torch.float32")],
         "ConsistentInputOutputRelation: the ValueParam must have role 'input' and value "
         "'output'"),
        ("DistinctArgumentRelation", [API, _value("input", "digest", "always")],
         "DistinctArgumentRelation: the ValueParam must have prop 'digest' and value 'ranks' "
         "or 'consecutive calls'"),
        ("ConstantStateRelation", [API, _named("requires_grad")], "ConstantStateRelation needs "
         "params [APIParam, VarNameParam, ValueParam]"),
        ("ConstantStateRelation", [API, _named("grad"), _state("grad", True)],
         "ConstantStateRelation: attribute 'grad' is not tracked (expected 'data' or "
         "'requires_grad')"),
        ("ConstantStateRelation", [API, _named("requires_grad"), _state("requires_grad", "yes")],
         "ConstantStateRelation: a requires_grad invariant's value must be a bool"),
        ("ConstantStateRelation", [API, _named("data"), _state("data", "changed")],
         "ConstantStateRelation: a data invariant's value must be 'unchanged'"),
        ("ConstantStateRelation", [API, _named("data"), _state("requires_grad", False)],
         "ConstantStateRelation: the ValueParam must have role 'state' and name the "
         "variable's attribute"),
        ("ConstantStateRelation", [API, _named("data"), _value("input", "value", "unchanged")],
         "ConstantStateRelation: the ValueParam must have role 'state'"),
        ("EqualVariablesRelation", [API, _named("data"), _var("data")], "EqualVariablesRelation "
         "needs params [APIParam, VarNameParam, VarNameParam]"),
        ("EqualVariablesRelation", [API, _named("data"), _named("requires_grad")],
         "EqualVariablesRelation: attribute 'requires_grad' is not tracked (expected 'data')"),
        ("SharedParameterRelation", [API, _named("identity"), _named("data")],
         "SharedParameterRelation: attribute 'data' is not tracked (expected 'identity')"),
        ("NumericRangeRelation", [API, _value("input", "magnitude", "always")],
         "NumericRangeRelation: the ValueParam must have prop 'magnitude', 'relative to first "
         "value' or 'ratio to group 0' with value 'in range', or prop 'change since previous "
         "step' with value 'changed', 'unchanged' or 'one more'"),
        ("NumericRangeRelation", [API, _value("output", "ratio to group 0", "in range")],
         "NumericRangeRelation: a group ratio is about an input (a per-group setting)"),
        ("NumericRangeRelation", [API, _var("data")], "NumericRangeRelation needs params "
         "[APIParam, ValueParam]"),
        ("DataOrderRelation", [API, _value("input", "digest", "epochs")],
         "DataOrderRelation: the ValueParam must have role 'output', prop 'digest' and value "
         "'epochs' or 'steps'"),
    ],
)  # fmt: skip
def test_params_are_checked_against_the_relation_declaration(
    tmp_path: Path, relation: str, params: list[object], message: str
) -> None:
    text = _doc({"relation": relation, "params": params})
    with pytest.raises(InvariantsFileError, match=re.escape(message)) as info:
        load_invariants(_write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_every_relation_declares_its_params() -> None:
    for name in relation_names():
        relation = get_relation(name)
        assert relation is not None
        assert shape_text(relation.params_type).startswith("[APIParam, ")


def test_a_declared_field_that_is_no_param_class_is_refused() -> None:
    class CountParams(NamedTuple):
        api: APIParam
        count: int

    with pytest.raises(TypeError, match=r"CountParams\.count"):
        param_classes(CountParams)


def test_inferred_and_loaded_invariants_carry_their_relation_typed_params(tmp_path: Path) -> None:
    runs = [LoopSpec(steps=12, seed=1), LoopSpec(steps=12, seed=2, pid=5151)]
    inferred = infer_from_streams([stored_events(s) for s in runs]).invariant_set
    dump_invariants(inferred, tmp_path / "inv.json")
    loaded = load_invariants(tmp_path / "inv.json")
    assert loaded == inferred and len({inv.relation for inv in loaded}) >= 5
    for invariant in (*inferred, *loaded):
        relation = get_relation(invariant.relation)
        assert relation is not None and isinstance(invariant.params, relation.params_type)
