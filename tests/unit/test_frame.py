"""Trace.to_frame: one row per event, fixed columns, arg.<name> columns, nullable types."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tracegen import manifest

from traincheck.events import (
    SCHEMA_VERSION,
    ApiCall,
    ApiReturn,
    ArgValue,
    Batch,
    MetaChange,
    RunEnd,
    RunStart,
    VarState,
)
from traincheck.sidecar.frame import COLUMNS, batches_to_frame
from traincheck.sidecar.store import Trace, TraceWriter, read_trace
from traincheck.tracedir import TraceDir
from traincheck.wire import encode_batch

BIG_DIGEST = 2**64 - 1


def sample_batches() -> list[Batch]:
    start = RunStart(1, 2, 10, 1, 0, 0, 1, "host", ["train.py"], "3.11", "2.13")
    common = {"thread": 7, "step": 3, "stage": "train"}
    call = ApiCall(
        5,
        11,
        0,
        api="torch.optim.Optimizer.step",
        **common,
        args=(
            ArgValue("optimizer", "optimizer", "Adam"),
            ArgValue("x", "tensor", shape=(2, 3), dtype="torch.float16"),
        ),
    )
    var = VarState(
        6,
        11,
        "post",
        7,
        3,
        "train",
        "Net.fc.weight",
        "Parameter",
        (4,),
        "torch.float32",
        "cpu",
        True,
        "nonzero",
        digest=BIG_DIGEST,
        grad_digest=None,
    )
    ret = ApiReturn(
        7,
        11,
        7,
        "torch.optim.Optimizer.step",
        3,
        "train",
        result=ArgValue("result", "float", 0.5),
        exception="RuntimeError",
    )
    meta = MetaChange(8, 7, "step", 4, 4, "train")
    end = RunEnd(9, 5, 0, 0, "exit")
    return [
        Batch(SCHEMA_VERSION, "r", 10, 0, 0, 0, [start, call]),
        Batch(SCHEMA_VERSION, "r", 10, 0, 1, 0, [var, ret, meta, end]),
    ]


def test_one_row_per_event_in_order() -> None:
    frame = batches_to_frame(sample_batches())
    assert list(frame["kind"]) == ["run_start", "call", "var", "ret", "meta", "run_end"]
    assert list(frame["seq"]) == [0, 0, 1, 1, 1, 1]
    assert set(COLUMNS) <= set(frame.columns)


def test_fields_land_in_their_columns() -> None:
    frame = batches_to_frame(sample_batches()).set_index("kind")
    assert frame.loc["call", "api"] == "torch.optim.Optimizer.step"
    assert frame.loc["call", "arg.optimizer"] == "Adam"
    assert frame.loc["call", "arg.x"] == "torch.float16"
    assert frame.loc["call", "arg.x.shape"] == (2, 3)
    assert frame.loc["var", "var_name"] == "Net.fc.weight"
    assert frame.loc["var", "digest"] == BIG_DIGEST
    assert frame.loc["var", "requires_grad"]
    assert frame.loc["ret", "exception"] == "RuntimeError"
    assert frame.loc["ret", "result"] == 0.5
    assert frame.loc["meta", "key"] == "step" and frame.loc["meta", "value"] == 4
    assert frame.loc["run_end", "reason"] == "exit"
    assert pd.isna(frame.loc["run_start", "step"])


def test_nullable_dtypes_support_vectorised_filters() -> None:
    frame = batches_to_frame(sample_batches())
    assert str(frame["step"].dtype) == "Int64"
    assert str(frame["digest"].dtype) == "UInt64"
    assert str(frame["requires_grad"].dtype) == "boolean"
    steps = frame[(frame["kind"] == "var") & (frame["step"] == 3)]
    assert len(steps) == 1


def test_empty_trace_has_all_columns(tmp_path: Path) -> None:
    TraceDir(tmp_path).write_manifest(manifest())
    frame = read_trace(tmp_path).to_frame()
    assert frame.empty and list(frame.columns) == list(COLUMNS)


def test_to_frame_reads_a_stored_trace(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path)
    for batch in sample_batches():
        writer.append(encode_batch(batch))
    writer.close()
    frame = read_trace(tmp_path).to_frame()
    assert len(frame) == 6 and frame["pid"].eq(10).all()


def test_trace_object_without_disk() -> None:
    trace = Trace(path=Path("."), manifest={}, batches=sample_batches())
    assert len(trace.to_frame()) == 6
