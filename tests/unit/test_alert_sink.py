"""Live alert display: grouping, de-duplication, throttling, root-cause order, colour."""

from __future__ import annotations

from dataclasses import replace

from traincheck.analysis import alert_sink
from traincheck.analysis.alert_sink import AlertSink, group_violations
from traincheck.analysis.violations import Violation

BASE = Violation(
    invariant_id="inv-a",
    relation="FunctionCoverRelation",
    text_description="zero_grad is called before every step",
    step=0,
    stage="train",
    pid=1,
    rank=0,
    thread=1,
    apis=("torch.optim.Optimizer.zero_grad", "torch.optim.Optimizer.step"),
    variables=(),
    what="torch.optim.Optimizer.step was called without a zero_grad call before it",
    expected="zero_grad before every step",
    observed="no zero_grad since the start of the run",
    num_positive_examples=40,
)


def violation(inv: str, step: int, seq: int, **changes) -> Violation:
    return replace(BASE, invariant_id=inv, step=step, seq=seq, detection_step=step, **changes)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def make_sink(**kwargs) -> tuple[AlertSink, list[str]]:
    writes: list[str] = []
    return AlertSink(writes.append, **kwargs), writes


def test_held_until_the_stream_moves_past_the_step() -> None:
    clock = Clock()
    sink, writes = make_sink(clock=clock)
    sink.add(violation("inv-a", 3, 1))
    sink.pump(current_step=3)
    assert writes == []
    sink.pump(current_step=4)
    assert len(writes) == 1 and writes[0].startswith("VIOLATION at step 3 (rank 0): ")


def test_held_at_most_flush_after_s() -> None:
    clock = Clock()
    sink, writes = make_sink(clock=clock)
    sink.add(violation("inv-a", 3, 1))
    clock.now = alert_sink.FLUSH_AFTER_S
    sink.pump(current_step=3)
    assert len(writes) == 1


def test_repeats_print_once_with_a_running_count() -> None:
    sink, writes = make_sink()
    for step in range(10):
        sink.add(violation("inv-a", step, step + 1))
        sink.pump(current_step=step + 1)
    sink.close()
    text = "".join(writes)
    assert text.count("VIOLATION") == 1
    assert "2 violations so far" in text and "8 violations so far" in text
    assert "10 violations in all, steps 0..9" in text
    assert text.count("repeated:") == 4  # 2, 4, 8, then the final tally


def test_same_api_same_step_grouped_state_after_control_flow() -> None:
    state = violation(
        "inv-state", 2, 1, variables=("Net.fc1.weight",), what="step left Net.fc1.weight unchanged"
    )
    flow = violation("inv-flow", 2, 2)
    other_step = violation("inv-later", 3, 3)
    groups = group_violations([other_step, state, flow])
    assert [[v.invariant_id for v in g] for g in groups] == [
        ["inv-flow", "inv-state"],
        ["inv-later"],
    ]
    sink, writes = make_sink()
    for v in (state, flow):
        sink.add(v)
    sink.close()
    lines = writes[0].splitlines()
    assert lines[0].startswith("2 related violations at step 2 (rank 0)")
    assert "without a zero_grad" in lines[1] and "unchanged" in writes[0].split("VIOLATION")[2]
    assert [v.invariant_id for v in sink.order] == ["inv-flow", "inv-state"]


def test_a_storm_is_throttled(monkeypatch) -> None:
    monkeypatch.setattr(alert_sink, "MAX_FULL_ALERTS", 3)
    sink, writes = make_sink()
    for i in range(10):
        sink.add(violation(f"inv-{i}", 0, i + 1, apis=(f"api{i}",)))
    sink.close()
    text = "".join(writes)
    assert text.count("VIOLATION") == 3
    assert sink.suppressed == 7 and "not shown (alert limit reached" in text


def test_each_flush_is_one_write_of_whole_lines() -> None:
    sink, writes = make_sink()
    sink.add(violation("inv-a", 0, 1))
    sink.add(violation("inv-b", 0, 2, apis=("x",)))
    sink.close()
    assert len(writes) == 1 and writes[0].endswith("\n")


def test_colour_only_when_asked() -> None:
    plain, plain_writes = make_sink()
    colour, colour_writes = make_sink(color=True)
    for sink in (plain, colour):
        sink.add(violation("inv-a", 0, 1))
        sink.close()
    assert "\x1b[" not in plain_writes[0]
    assert "\x1b[" in colour_writes[0] and "VIOLATION at step 0" in colour_writes[0]
