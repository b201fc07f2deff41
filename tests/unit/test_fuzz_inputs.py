"""Fuzzing the two parsers that read untrusted bytes (issue 6): the wire decoder and the
invariants loader. Whatever they are fed, they either return typed data or raise their
own one-line error -- never another exception, never code execution."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traincheck.analysis.invariants import InvariantSet
from traincheck.analysis.invariants_file import load_invariants
from traincheck.errors import InvariantsFileError
from traincheck.events import SCHEMA_VERSION, Batch, MetaChange
from traincheck.wire import WireError, decode_batch, encode_batch

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_decoder_rejects_arbitrary_bytes_cleanly(data: bytes) -> None:
    try:
        batch = decode_batch(data)
    except WireError:
        return
    assert isinstance(batch, Batch)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_decoder_rejects_arbitrary_msgpack_structures(value: object) -> None:
    try:
        batch = decode_batch(msgspec.msgpack.encode(value))
    except WireError:
        return
    assert isinstance(batch, Batch)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=200))
def test_decoder_survives_mutated_valid_batches(noise: bytes, where: int) -> None:
    original = Batch(SCHEMA_VERSION, "r", 1, 0, 0, 0, [MetaChange(1, 1, "step", 2, 2, "train")])
    good = encode_batch(original)
    mutated = good[:where] + noise + good[where + len(noise) :]
    if mutated == good:  # no noise, or noise equal to the bytes it overwrote
        assert decode_batch(mutated, expected_run_id="r") == original
        return
    try:
        batch = decode_batch(mutated, expected_run_id="r")
    except WireError:
        return
    assert isinstance(batch, Batch)


@pytest.mark.parametrize("noise", [b"\n", b"\x1b[31m"])
def test_wire_error_reasons_are_one_printable_line(noise: bytes) -> None:
    """Found by the fuzz test above: bytes inside an event tag are echoed in the reason."""
    good = encode_batch(
        Batch(SCHEMA_VERSION, "r", 1, 0, 0, 0, [MetaChange(1, 1, "step", 2, 2, "train")])
    )
    with pytest.raises(WireError) as info:
        decode_batch(good[:11] + noise + good[11 + len(noise) :], expected_run_id="r")
    assert str(info.value).isprintable(), str(info.value)


def test_wrong_schema_version_and_run_id_are_rejected_with_reasons() -> None:
    batch = Batch(SCHEMA_VERSION + 1, "r", 1, 0, 0, 0, [])
    for data, needle, run_id in (
        (encode_batch(batch), "schema version", None),
        (encode_batch(Batch(SCHEMA_VERSION, "other", 1, 0, 0, 0, [])), "expected 'r'", "r"),
    ):
        try:
            decode_batch(data, expected_run_id=run_id)
        except WireError as exc:
            assert needle in str(exc)
        else:
            raise AssertionError("accepted")


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(json_values)
def test_invariants_loader_accepts_or_refuses_in_one_line(tmp_path: Path, value: object) -> None:
    path = tmp_path / "inv.json"
    path.write_text(
        json.dumps({"format": "traincheck-invariants", "format_version": 1, "invariants": [value]})
    )
    try:
        load_invariants(path)
    except InvariantsFileError as exc:
        assert "\n" not in str(exc)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_invariants_loader_refuses_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "inv.json"
    path.write_bytes(data)
    try:
        invariants = load_invariants(path)
    except InvariantsFileError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(invariants, InvariantSet)


def test_crafted_invariants_file_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')"
    crafted = {
        "format": "traincheck-invariants",
        "format_version": 1,
        "invariants": [
            {
                "relation": "APIContainRelation",
                "params": [{"param_type": "APIParam", "api_full_name": payload}],
                "precondition": {
                    "g": {
                        "inverted": False,
                        "preconditions": [
                            {
                                "clauses": [
                                    {
                                        "type": "constant",
                                        "prop_name": "x",
                                        "prop_dtype": payload,
                                        "values": [1],
                                    }
                                ]
                            }
                        ],
                    }
                },
                "text_description": payload,
                "num_positive_examples": 1,
                "num_negative_examples": 0,
            }
        ],
    }
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(crafted))
    try:
        load_invariants(path)
    except InvariantsFileError:
        pass
    assert not marker.exists()


def test_deeply_nested_invariants_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    try:
        load_invariants(path)
    except InvariantsFileError as exc:
        assert "\n" not in str(exc)
    else:
        raise AssertionError("accepted")
