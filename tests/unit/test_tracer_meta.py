"""Step and stage detection, and annotations, without a traced process."""

from __future__ import annotations

import pytest

import traincheck
from traincheck.events import Scalar
from traincheck.tracer.meta import Annotation, MetaState


def _meta() -> tuple[MetaState, list[tuple[str, Scalar]]]:
    changes: list[tuple[str, Scalar]] = []
    return MetaState(lambda key, value: changes.append((key, value))), changes


def test_stage_is_init_until_a_training_api_runs_with_grad() -> None:
    meta, changes = _meta()
    assert meta.enter_training_api(grad_enabled=False, inference_mode=False) == "init"
    assert meta.enter_training_api(grad_enabled=True, inference_mode=True) == "init"
    assert changes == []
    assert meta.enter_training_api(grad_enabled=True, inference_mode=False) == "train"
    assert meta.enter_training_api(grad_enabled=False, inference_mode=False) == "eval"
    assert meta.enter_training_api(grad_enabled=True, inference_mode=True) == "eval"
    assert meta.enter_training_api(grad_enabled=True, inference_mode=False) == "train"
    assert changes == [("stage", "train"), ("stage", "eval"), ("stage", "train")]


def test_step_is_max_of_completed_optimizer_steps() -> None:
    meta, changes = _meta()
    assert meta.complete_optimizer_step(0) == 1
    assert meta.complete_optimizer_step(1) == 1
    assert meta.complete_optimizer_step(0) == 2
    assert meta.complete_optimizer_step(1) == 2
    assert changes == [("step", 1), ("step", 2)]


def test_annotation_as_context_manager_restores_previous_values() -> None:
    meta, changes = _meta()
    Annotation(meta, {"epoch": 1})
    with Annotation(meta, {"epoch": 2, "phase": "warmup"}):
        assert meta.annotations == {"epoch": 2, "phase": "warmup"}
    assert meta.annotations == {"epoch": 1}
    assert changes == [
        ("epoch", 1),
        ("epoch", 2),
        ("phase", "warmup"),
        ("phase", None),
        ("epoch", 1),
    ]


def test_stage_annotation_overrides_detection_while_set() -> None:
    meta, changes = _meta()
    with Annotation(meta, {"stage": "eval"}):
        assert meta.enter_training_api(grad_enabled=True, inference_mode=False) == "eval"
    assert meta.enter_training_api(grad_enabled=True, inference_mode=False) == "train"
    assert changes == [("stage", "eval"), ("stage", "train")]


def test_the_test_stage_is_set_by_annotation_only() -> None:
    meta, changes = _meta()
    assert meta.enter_training_api(grad_enabled=False, inference_mode=False) == "init"
    meta.enter_training_api(grad_enabled=True, inference_mode=False)
    assert meta.enter_training_api(grad_enabled=False, inference_mode=True) == "eval"
    with Annotation(meta, {"stage": "test"}):
        assert meta.enter_training_api(grad_enabled=False, inference_mode=True) == "test"
    assert meta.enter_training_api(grad_enabled=False, inference_mode=True) == "eval"
    assert changes[-2:] == [("stage", "test"), ("stage", "eval")]


def test_annotate_without_tracer_is_a_validated_no_op() -> None:
    with traincheck.annotate(epoch=3, note=object()):
        pass
    traincheck.annotate(epoch=4)
    with pytest.raises(ValueError, match="step"):
        traincheck.annotate(step=3)
    with pytest.raises(ValueError, match="stage"):
        traincheck.annotate(stage="warmup")
