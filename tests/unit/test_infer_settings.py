"""Inference options: precondition sampling, order independence, CLI validation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from tracegen import LoopSpec, write_trace

from traincheck.analysis.relations.base import sample_examples
from traincheck.cli.infer import main


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("traces")
    return [
        write_trace(root / "a", LoopSpec(steps=9, seed=1, eval_every=3)),
        write_trace(root / "b", LoopSpec(steps=6, seed=2, eval_every=3, pid=7)),
        write_trace(root / "c", LoopSpec(steps=5, seed=3, forward_dtype="torch.bfloat16")),
    ]


def test_same_traces_in_any_order_give_the_same_bytes(traces, tmp_path) -> None:
    outputs = []
    for i, order in enumerate((traces, traces[::-1], [traces[1], traces[0], traces[2]])):
        out = tmp_path / f"inv{i}.json"
        assert main(["-f", *map(str, order), "-o", str(out)]) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_sampling_is_bounded_and_order_free() -> None:
    examples = Counter({(("args.x", "str", str(i)),): i + 1 for i in range(50)})
    sampled = sample_examples(examples, 10)
    assert len(sampled) == 10 and all(sampled[k] == examples[k] for k in sampled)
    reordered = Counter(dict(reversed(list(examples.items()))))
    assert sample_examples(reordered, 10) == sampled
    assert sample_examples(examples, None) is examples


def test_sampling_flags_are_accepted_and_validated(traces, tmp_path, capsys) -> None:
    out = tmp_path / "inv.json"
    assert main(["-f", str(traces[0]), "-o", str(out), "--disable-precond-sampling"]) == 0
    assert main(["-f", str(traces[0]), "-o", str(out), "--precond-sampling-threshold", "5"]) == 0
    assert main(["-f", str(traces[0]), "-o", str(out), "--precond-sampling-threshold", "0"]) == 2
    assert "not a positive integer" in capsys.readouterr().err
