"""The invariants file: ``load_invariants`` / ``dump_invariants``.

File format (documented in ``docs/invariants.md``)::

    {"format": "traincheck-invariants", "format_version": 1, "invariants": [INV, ...]}

JSON Lines of invariant objects (the published tool's output) are accepted too.
An invariant object follows the published representation: ``relation``, ``params``
(``APIParam`` / ``VarTypeParam``), ``precondition`` (``{group: {inverted,
preconditions: [{clauses: [...]}]}}`` or ``"Unconditional"``), ``text_description``,
``num_positive_examples``, ``num_negative_examples``, plus a stable ``id``.

The file is data, never code: it is parsed with ``json`` and checked field by
field (a clause's ``prop_dtype`` is looked up in a table, where the published tool
calls ``eval`` on it). Oversized or absurdly nested input is refused before it can
exhaust memory or the stack.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from traincheck.analysis.instrumentation import instrumentation_for
from traincheck.analysis.invariants import (
    VALUE_ROLES,
    APIParam,
    Invariant,
    InvariantSet,
    Param,
    ValueParam,
    VarNameParam,
    VarTypeParam,
    make_invariant,
)
from traincheck.analysis.preconditions import Precondition, dtype_of, precondition_from_json
from traincheck.analysis.relations.known import AnyRelation, get_relation, relation_names
from traincheck.errors import InvariantsFileError

FILE_FORMAT = "traincheck-invariants"
FILE_FORMAT_VERSION = 1
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_NESTING = 32


def dump_invariants(invariant_set: InvariantSet, path: str | Path) -> None:
    """Write the file atomically, with sorted keys: same invariants, same bytes."""
    path = Path(path)
    document = {
        "format": FILE_FORMAT,
        "format_version": FILE_FORMAT_VERSION,
        "invariants": [inv.to_json() for inv in invariant_set],
        "instrumentation": instrumentation_for(invariant_set),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load_invariants(path: str | Path) -> InvariantSet:
    """Read and validate an invariants file; raise InvariantsFileError with one-line reasons."""
    path = Path(path)
    text = _read_text(path)
    items = _parse_document(text, path)
    invariants = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(items, start=1):
        try:
            invariant = invariant_from_json(item)
        except ValueError as exc:
            raise InvariantsFileError(f"{path}: invariant #{index}: {exc}") from None
        earlier = first_index.setdefault(invariant.id, index)
        if earlier != index:  # an alert naming this id would not say which one broke
            raise InvariantsFileError(
                f"{path}: invariant #{index} has the id {invariant.id!r} of invariant #{earlier}"
            )
        invariants.append(invariant)
    return InvariantSet(tuple(invariants), source=str(path))


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise InvariantsFileError(f"{path}: not a file")
        if size > MAX_FILE_BYTES:
            raise InvariantsFileError(
                f"{path}: {size} bytes is larger than the {MAX_FILE_BYTES} byte limit"
            )
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InvariantsFileError(f"invariants file not found: {path}") from None
    except UnicodeDecodeError:
        raise InvariantsFileError(f"{path}: not a text (UTF-8) file") from None
    except OSError as exc:
        raise InvariantsFileError(f"{path}: cannot read ({exc.strerror})") from None


def _parse_document(text: str, path: Path) -> list[Any]:
    """Return the list of invariant objects of a document or of JSON Lines."""
    try:
        document = _loads(text, path)
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise InvariantsFileError(f"{path}: not JSON ({exc})") from None
        return _parse_json_lines(text, path)
    if isinstance(document, dict) and "relation" in document:
        return [document]
    if not isinstance(document, dict):
        raise InvariantsFileError(f"{path}: expected a JSON object with 'format': '{FILE_FORMAT}'")
    if document.get("format") != FILE_FORMAT:
        raise InvariantsFileError(
            f"{path}: not a TrainCheck invariants file (no 'format': '{FILE_FORMAT}')"
        )
    if document.get("format_version") != FILE_FORMAT_VERSION:
        raise InvariantsFileError(
            f"{path}: format_version {document.get('format_version')!r} is not supported "
            f"(expected {FILE_FORMAT_VERSION})"
        )
    items = document.get("invariants")
    if not isinstance(items, list):
        raise InvariantsFileError(f"{path}: 'invariants' must be a list")
    return items


def _parse_json_lines(text: str, path: Path) -> list[Any]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(_loads(line, path))
        except json.JSONDecodeError as exc:
            raise InvariantsFileError(f"{path}: line {number}: not JSON ({exc.msg})") from None
    return items


def _loads(text: str, path: Path) -> Any:
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvariantsFileError(f"{path}: JSON nested deeper than {MAX_NESTING} levels") from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise InvariantsFileError(f"{path}: not usable JSON ({exc})") from None
    try:
        _check_values(value)
    except ValueError as exc:
        raise InvariantsFileError(f"{path}: {exc}") from None
    return value


def _check_values(value: Any) -> None:
    """Refuse what parses but cannot be used: nesting deeper than MAX_NESTING, and
    strings with a lone surrogate (``"\\ud800"`` is valid JSON but no Unicode text:
    it could never be written back or printed). Iterative, so a deep document
    cannot overflow the stack."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_NESTING:
            raise ValueError(f"JSON nested deeper than {MAX_NESTING} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
            stack.extend((k, depth + 1) for k in item)
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str) and not _is_unicode(item):
            raise ValueError("a string holds a lone surrogate (not Unicode text)")


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def invariant_from_json(data: Any) -> Invariant[Any]:
    """Parse one invariant object; raise ValueError naming the problem.

    Its params are checked against the relation's declaration (``params_type``) here,
    once, and the invariant carries them typed: relation code checks nothing again."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    name = data.get("relation")
    if not isinstance(name, str):
        raise ValueError("missing 'relation'")
    relation = get_relation(name)
    if relation is None:
        raise ValueError(f"unknown relation {name!r} (known: {', '.join(relation_names())})")
    raw_params = data.get("params")
    if not isinstance(raw_params, list):
        raise ValueError("'params' must be a list")
    params = relation.parse_params([_param_from_json(p) for p in raw_params])
    group, precondition = _group_from_json(data.get("precondition", "Unconditional"), relation)
    counts = [data.get(k, 0) for k in ("num_positive_examples", "num_negative_examples")]
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        raise ValueError("example counts must be non-negative integers")
    text = data.get("text_description") or relation.describe(params)
    if not isinstance(text, str):
        raise ValueError("'text_description' must be a string")
    hints = data.get("hints", {})
    if not isinstance(hints, dict) or not all(
        isinstance(k, str) and _valid_hint(v) for k, v in hints.items()
    ):
        raise ValueError("'hints' must map names to non-negative integers or finite floats")
    inv = make_invariant(
        name,
        params,
        precondition,
        group=group,
        text_description=text,
        num_positive_examples=counts[0],
        num_negative_examples=counts[1],
        hints=tuple(sorted(hints.items())),
    )
    given_id = data.get("id")
    if given_id is not None and not isinstance(given_id, str):
        raise ValueError("'id' must be a string")
    return replace(inv, id=given_id or inv.id)


def _valid_hint(value: Any) -> bool:
    """A count (VarPeriodicChange) is a non-negative integer; a bound (NumericRange) a
    finite float."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, float) and math.isfinite(value)


def _param_from_json(data: Any) -> Param:
    if not isinstance(data, dict):
        raise ValueError("each param must be an object")
    kind = data.get("param_type")
    if kind == "APIParam":
        if not isinstance(data.get("api_full_name"), str):
            raise ValueError("APIParam needs a string 'api_full_name'")
        return APIParam(data["api_full_name"])
    if kind == "VarTypeParam":
        for key in ("var_type", "attr_name"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"VarTypeParam needs a string '{key}'")
        for key in ("pre_value", "post_value"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ValueError(f"VarTypeParam '{key}' must be a string or null")
        return VarTypeParam(
            data["var_type"], data["attr_name"], data.get("pre_value"), data.get("post_value")
        )
    if kind == "VarNameParam":
        for key in ("var_type", "var_name", "attr_name"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"VarNameParam needs a string '{key}'")
        return VarNameParam(data["var_type"], data["var_name"], data["attr_name"])
    if kind == "ValueParam":
        return _value_param_from_json(data)
    raise ValueError(
        f"unsupported param_type {kind!r} "
        "(expected APIParam, VarTypeParam, VarNameParam or ValueParam)"
    )


def _value_param_from_json(data: dict[str, Any]) -> ValueParam:
    if data.get("role") not in VALUE_ROLES:
        raise ValueError("ValueParam 'role' must be 'input', 'output' or 'state'")
    for key in ("name", "prop"):
        if not isinstance(data.get(key), str):
            raise ValueError(f"ValueParam needs a string '{key}'")
    if dtype_of(data.get("value")) is None:
        raise ValueError("ValueParam 'value' must be a bool, number or string")
    return ValueParam(data["role"], data["name"], data["prop"], data["value"])


def _group_from_json(data: Any, relation: AnyRelation) -> tuple[str, Precondition | None]:
    if data == "Unconditional":
        return relation.group, None
    if not isinstance(data, dict) or len(data) != 1:
        raise ValueError("'precondition' must be \"Unconditional\" or an object with one group")
    ((group, body),) = data.items()
    return group, precondition_from_json(body)
