"""The instrumentation plan: what the tracer of one run traces.

The launcher writes it as JSON into the private run directory and names the file
in ``TRAINCHECK_PLAN``; without it the tracer traces everything it knows (full
tracing, what inference needs). With ``--invariants`` the plan lists only what
those invariants need (``traincheck-infer`` writes that beside them, under
``"instrumentation"``), so selective tracing costs next to nothing.

The file is data: parsed with ``json``, every field checked; a plan that cannot
be read makes the tracer fall back to full tracing (and say so), because tracing
too much is safe and tracing too little silently is not. Torch-free.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from traincheck.catalogue import (
    AUTOGRAD_BACKWARD,
    MODULE_CALL,
    MODULE_ZERO_GRAD,
    OPTIMIZER_STEP,
    OPTIMIZER_ZERO_GRAD,
    TENSOR_BACKWARD,
)
from traincheck.private_files import read_capped, write_private_file

PLAN_FORMAT = "traincheck-plan"
PLAN_FORMAT_VERSION = 1
PLAN_MAX_BYTES = 16 * 1024 * 1024
"""A plan lists API names and state points: kilobytes. Larger is not ours."""


@dataclasses.dataclass(frozen=True)
class TracingPlan:
    """What to trace. The default value is full tracing.

    ``apis``: the API names to emit events for (None: every API the tracer knows).
    ``param_digests`` / ``grad_states``: whether parameter ``VarState`` events are
    recorded, with data digests and/or gradient states. ``modules_to_instr``:
    extra modules (``torch.nn.functional``, a user package) whose public functions
    get generic wrappers. ``models_to_track``: parameter-name prefixes
    (``Net`` or ``Net.fc1``) to record state for (None: every model found).
    ``sampling_interval`` / ``warm_up_steps``: record every step until
    ``warm_up_steps``, then every ``sampling_interval``-th step.
    ``input_digests``: whether the batch fed to an outermost module call carries a
    content digest (about 12 us per forward pass on a 64x784 batch; only
    DistinctArgument invariants need it, so a selective plan turns it off otherwise).
    ``state_points``: the points where variable state is recorded, as ``(api, phase,
    with_digest)``; None means every point full tracing records (see
    :meth:`state_at`). A selective plan lists exactly the points its invariants read.
    ``module_depth``: how many levels of module calls below the outermost one are
    traced as ``SUBMODULE_CALL`` (None: every level; 0: none). ``module_classes``:
    the module classes whose sub-module calls are traced (None: every class); a
    selective plan names the classes its invariants speak of.
    """

    apis: frozenset[str] | None = None
    param_digests: bool = True
    grad_states: bool = True
    modules_to_instr: tuple[str, ...] = ()
    models_to_track: tuple[str, ...] | None = None
    sampling_interval: int = 1
    warm_up_steps: int = 0
    input_digests: bool = True
    state_points: tuple[tuple[str, str, bool], ...] | None = None
    module_depth: int | None = None
    module_classes: frozenset[str] | None = None
    _state_map: dict[tuple[str, str], tuple[bool, bool]] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # state_at is asked at every traced call: index the points once per plan.
        # Listed twice with different digest flags, a point takes digests.
        if self.state_points is not None:
            index: dict[tuple[str, str], tuple[bool, bool]] = {}
            for api, phase, digest in self.state_points:
                index[(api, phase)] = (True, digest or index.get((api, phase), (False, False))[1])
            object.__setattr__(self, "_state_map", index)

    def state_at(self, api: str, phase: str) -> tuple[bool, bool]:
        """``(record, with_digest)``: whether to record variable state before
        (``pre``) or after (``post``) ``api``, and whether with data digests."""
        if self._state_map is not None:
            return self._state_map.get((api, phase), (False, False))
        if api == OPTIMIZER_STEP:
            return self.records_state, self.param_digests
        if api in _GRAD_POINT_APIS:
            return self.grad_states, False
        if api == MODULE_CALL:  # the module's buffers (BatchNorm running statistics)
            return self.param_digests, True
        return False, False

    def traces(self, api: str) -> bool:
        """Whether events of ``api`` are wanted."""
        return self.apis is None or api in self.apis

    @property
    def records_state(self) -> bool:
        return self.param_digests or self.grad_states

    def records_step(self, step: int) -> bool:
        """Whether events of optimizer step ``step`` (0-based) are recorded."""
        if step < self.warm_up_steps or self.sampling_interval <= 1:
            return True
        return (step - self.warm_up_steps) % self.sampling_interval == 0

    def tracks(self, name: str) -> bool:
        """Whether the variable ``name`` belongs to a model the user asked to track."""
        if self.models_to_track is None:
            return True
        return any(name == m or name.startswith((f"{m}.", f"{m}[")) for m in self.models_to_track)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "format_version": PLAN_FORMAT_VERSION,
            "apis": sorted(self.apis) if self.apis is not None else None,
            "param_digests": self.param_digests,
            "grad_states": self.grad_states,
            "modules_to_instr": list(self.modules_to_instr),
            "models_to_track": (
                list(self.models_to_track) if self.models_to_track is not None else None
            ),
            "sampling_interval": self.sampling_interval,
            "warm_up_steps": self.warm_up_steps,
            "input_digests": self.input_digests,
            "state_points": (
                [
                    {"api": api, "phase": phase, "digest": digest}
                    for api, phase, digest in self.state_points
                ]
                if self.state_points is not None
                else None
            ),
            "module_depth": self.module_depth,
            "module_classes": (
                sorted(self.module_classes) if self.module_classes is not None else None
            ),
        }


def plan_from_json(data: Any) -> TracingPlan:
    """Parse a plan document; raise ValueError naming the first bad field."""
    if not isinstance(data, Mapping) or data.get("format") != PLAN_FORMAT:
        raise ValueError(f"not a {PLAN_FORMAT} document")
    if data.get("format_version") != PLAN_FORMAT_VERSION:
        raise ValueError(f"unsupported plan format_version {data.get('format_version')!r}")
    apis = _optional_names(data, "apis")
    models = _optional_names(data, "models_to_track")
    classes = _optional_names(data, "module_classes")
    depth = data.get("module_depth")
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 0):
        raise ValueError("plan field 'module_depth' must be an integer >= 0 or null")
    return TracingPlan(
        apis=frozenset(apis) if apis is not None else None,
        param_digests=_bool(data, "param_digests", True),
        grad_states=_bool(data, "grad_states", True),
        modules_to_instr=tuple(_optional_names(data, "modules_to_instr") or ()),
        models_to_track=tuple(models) if models is not None else None,
        sampling_interval=_positive_int(data, "sampling_interval", 1),
        warm_up_steps=_positive_int(data, "warm_up_steps", 0, minimum=0),
        input_digests=_bool(data, "input_digests", True),
        state_points=_state_points(data.get("state_points")),
        module_depth=depth,
        module_classes=frozenset(classes) if classes is not None else None,
    )


def write_plan_file(path: Path, plan: TracingPlan) -> None:
    """Write ``plan`` as its JSON document, owner-only and atomically (raises OSError)."""
    text = json.dumps(plan.to_json(), indent=2, sort_keys=True) + "\n"
    write_private_file(path, text.encode())


def load_plan(path: str | Path) -> TracingPlan:
    """Read a plan file (raises OSError / ValueError), at most ``PLAN_MAX_BYTES``."""
    try:
        return plan_from_json(json.loads(read_capped(Path(path), PLAN_MAX_BYTES)))
    except RecursionError:
        raise ValueError("plan JSON nested too deeply") from None


_GRAD_POINT_APIS = frozenset(
    {OPTIMIZER_ZERO_GRAD, MODULE_ZERO_GRAD, TENSOR_BACKWARD, AUTOGRAD_BACKWARD}
)
"""APIs whose calls record gradient states (no digests) under full tracing."""


def _state_points(value: Any) -> tuple[tuple[str, str, bool], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError("plan field 'state_points' must be a list or null")
    points = []
    for item in value:
        if (
            not isinstance(item, Mapping)
            or not isinstance(item.get("api"), str)
            or item.get("phase") not in ("pre", "post")
            or not isinstance(item.get("digest"), bool)
        ):
            raise ValueError("plan field 'state_points' needs {api, phase: pre|post, digest}")
        points.append((item["api"], item["phase"], item["digest"]))
    return tuple(sorted(set(points)))


def _optional_names(data: Mapping[str, Any], key: str) -> list[str] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"plan field {key!r} must be a list of strings or null")
    return value


def _bool(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"plan field {key!r} must be true or false")
    return value


def _positive_int(data: Mapping[str, Any], key: str, default: int, *, minimum: int = 1) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"plan field {key!r} must be an integer >= {minimum}")
    return value
