"""A trace as one pandas DataFrame: one row per event, in stored order.

Columns are fixed (``COLUMNS``) plus one ``arg.<name>`` column per argument name
seen in ``ApiCall`` events, so inference can stay column-wise (vectorised pandas
code that Dask or Polars can also run) instead of looping over event objects.

* ``arg.<name>`` holds the argument's scalar ``value``; for a tensor argument it
  holds the dtype, and ``arg.<name>.shape`` holds the shape.
* ``result`` holds an ``ApiReturn``'s result the same way.
* A field an event kind lacks is missing (``<NA>``/None) in that row.
* Integer columns use pandas' nullable dtypes (digests unsigned 64-bit), names
  and labels the ``string`` dtype, values (``arg.*``, ``value``, ``result``,
  ``shape``) stay Python objects so ints, floats, bools and strings keep their type.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from traincheck.events import ApiCall, ApiReturn, ArgValue, Batch

COLUMNS = (
    "pid",
    "rank",
    "seq",
    "kind",
    "ts_ns",
    "thread",
    "call_id",
    "parent_id",
    "api",
    "step",
    "stage",
    "phase",
    "var_name",
    "var_type",
    "shape",
    "dtype",
    "device",
    "requires_grad",
    "grad",
    "digest",
    "grad_digest",
    "aliases",
    "exception",
    "result",
    "key",
    "value",
    "reason",
)
"""Every column a frame has, whatever the trace holds (empty traces included)."""

_INT_COLUMNS = ("pid", "rank", "seq", "ts_ns", "thread", "call_id", "parent_id", "step")
_DTYPES = {
    **dict.fromkeys(_INT_COLUMNS, "Int64"),
    "digest": "UInt64",
    "grad_digest": "UInt64",
    "requires_grad": "boolean",
}
_STRING_COLUMNS = frozenset(
    {"kind", "api", "stage", "phase", "var_name", "var_type", "dtype", "device", "grad"}
    | {"exception", "key", "reason"}
)
_EVENT_FIELDS = frozenset(COLUMNS) - {"pid", "rank", "seq", "kind", "result"}


def batches_to_frame(batches: list[Batch]) -> pd.DataFrame:
    """Load every event of ``batches`` into one DataFrame (see the module docstring)."""
    records = [event_record(batch, event) for batch in batches for event in batch.events]
    columns = _all_columns(records)
    data = {name: _column([r.get(name) for r in records], name) for name in columns}
    return pd.DataFrame(data, columns=columns)


def event_record(batch: Batch, event: Any) -> dict[str, Any]:
    """One event as a flat dict of the columns it has."""
    record: dict[str, Any] = {
        "pid": batch.pid,
        "rank": batch.rank,
        "seq": batch.seq,
        "kind": type(event).__struct_config__.tag,
    }
    for name in event.__struct_fields__:
        if name in _EVENT_FIELDS:
            record[name] = getattr(event, name)
    if isinstance(event, ApiCall):
        for arg in event.args:
            _put_arg(record, f"arg.{arg.name}", arg)
    elif isinstance(event, ApiReturn) and event.result is not None:
        _put_arg(record, "result", event.result)
    return record


def _put_arg(record: dict[str, Any], column: str, arg: ArgValue) -> None:
    if arg.kind == "tensor":
        record[column] = arg.dtype
        record[f"{column}.shape"] = arg.shape
    else:
        record[column] = arg.value


def _all_columns(records: list[dict[str, Any]]) -> list[str]:
    extra: dict[str, None] = {}
    for record in records:
        extra.update((k, None) for k in record if k.startswith("arg."))
    return list(COLUMNS) + sorted(extra)


def _column(values: list[Any], name: str) -> Any:
    """Build one column with its dtype fixed up front: letting pandas infer would
    turn integers with gaps into floats and lose digest bits."""
    dtype = _DTYPES.get(name)
    if dtype is not None:
        try:
            return pd.array(values, dtype=dtype)
        except (TypeError, ValueError, OverflowError):
            return pd.Series(values, dtype=object)
    if name in _STRING_COLUMNS:
        return pd.array(values, dtype="string")
    return pd.Series(values, dtype=object)
