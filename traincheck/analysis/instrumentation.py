"""What checking an invariant set needs traced: the instrumentation plan.

``traincheck-infer`` writes it beside the invariants (top-level key
``"instrumentation"``), and ``traincheck-collect --invariants`` /
``traincheck-run --selective`` derive the tracer's plan from it, so a selective
run traces exactly the APIs, variables, arguments and meta-variables the
invariants refer to, and nothing more. It is computed from the invariants
alone (never from a trace), by walking their params and precondition clauses,
so it is the same whichever relation produced an invariant.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from traincheck.analysis.invariants import (
    APIParam,
    Invariant,
    InvariantSet,
    ValueParam,
    VarNameParam,
    VarTypeParam,
)
from traincheck.analysis.var_attrs import ANYTHING, DATA, GRAD, IDENTITY
from traincheck.catalogue import SUBMODULE_CALL, traceable
from traincheck.tracing_plan import TracingPlan


def instrumentation_for(invariants: Iterable[Invariant[Any]]) -> dict[str, Any]:
    """The ``"instrumentation"`` section: sorted lists, so equal sets give equal files."""
    apis: set[str] = set()
    variables: set[tuple[str, str]] = set()
    args: set[str] = set()
    meta_vars: set[str] = set()
    for invariant in invariants:
        for param in invariant.params:
            if isinstance(param, APIParam):
                apis.add(param.api_full_name)
            elif isinstance(param, (VarTypeParam, VarNameParam)):
                variables.add((param.var_type, param.attr_name))
            elif isinstance(param, ValueParam) and param.role == "input":
                args.update(_argument_names(param.name))
        for prop in _precondition_props(invariant):
            kind, _, name = prop.partition(".")
            (args if kind == "args" else meta_vars).add(name)
    return {
        "apis": sorted(apis),
        "variables": [{"var_type": t, "attr_name": a} for t, a in sorted(variables)],
        "args": sorted(args),
        "meta_vars": sorted(meta_vars),
        "return_values": sorted(apis),
        "state_points": [
            {"api": api, "phase": phase, "digest": digest}
            for api, phase, digest in state_points_for(invariants)
        ],
    }


def _argument_names(name: str) -> tuple[str, ...]:
    """The arguments an input param reads: a per-group setting ``lr[1]`` is judged
    against group 0's ``lr`` (NumericRange's group ratio), so both are needed."""
    base, bracket, _ = name.partition("[")
    return (name, base) if bracket and base else (name,)


def needed_state(invariant: Invariant[Any]) -> set[tuple[str, str, bool]]:
    """``(api, phase, with_digest)``: where the invariant reads variable state.

    Read from its params, the same way for every relation: a variable param speaks
    about the API param before it (``Optimizer.step`` in "step changes data",
    the first API of SingleUpdate's ``(U, var, R)``). Data is compared before and
    after the call, so both phases need digests; a gradient state is needed at
    every phase whose value is not ``ANYTHING`` (StateAtCall's "grad present
    before step" needs the pre phase only). A value of None is the state "no
    gradient", not "unconstrained": APIContain's "backward changes grad from None
    to non_zero" needs both phases. Identity (which Parameter a path holds) is read
    from the aliases every state carries, and a call does not change the model's
    structure: the pre phase, without digests, is enough.
    """
    points: set[tuple[str, str, bool]] = set()
    api: str | None = None
    for param in invariant.params:
        if isinstance(param, APIParam):
            api = param.api_full_name
        elif isinstance(param, (VarTypeParam, VarNameParam)) and api is not None:
            digest = param.attr_name == DATA
            phases: tuple[str, ...] = ("pre",) if param.attr_name == IDENTITY else ("pre", "post")
            if isinstance(param, VarTypeParam) and not digest:
                valued = tuple(
                    phase
                    for phase, value in (("pre", param.pre_value), ("post", param.post_value))
                    if value != ANYTHING
                )
                phases = valued or phases
            points.update((api, phase, digest) for phase in phases)
    return points


def state_points_for(invariants: Iterable[Invariant[Any]]) -> tuple[tuple[str, str, bool], ...]:
    """Every point some invariant reads, with digests where any of them needs data."""
    digest_at: dict[tuple[str, str], bool] = {}
    for invariant in invariants:
        for api, phase, digest in needed_state(invariant):
            digest_at[(api, phase)] = digest_at.get((api, phase), False) or digest
    return tuple(sorted((api, phase, digest) for (api, phase), digest in digest_at.items()))


def tracing_plan(
    invariants: InvariantSet,
    *,
    modules_to_instr: tuple[str, ...] = (),
    models_to_track: tuple[str, ...] | None = None,
    sampling_interval: int = 1,
    warm_up_steps: int = 0,
    module_depth: int | None = None,
) -> TracingPlan:
    """The tracer's plan for checking ``invariants``: their APIs and variables only."""
    section = instrumentation_for(invariants)
    attrs = {v["attr_name"] for v in section["variables"]}
    digests = any(_needs_input_digest(param) for inv in invariants for param in inv.params)
    return TracingPlan(
        apis=frozenset(section["apis"]),
        param_digests=DATA in attrs,
        grad_states=GRAD in attrs,
        state_points=state_points_for(invariants),
        modules_to_instr=modules_to_instr,
        models_to_track=models_to_track,
        sampling_interval=sampling_interval,
        warm_up_steps=warm_up_steps,
        input_digests=digests,
        module_classes=module_classes_for(invariants),
        module_depth=module_depth,
    )


def module_classes_for(invariants: Iterable[Invariant[Any]]) -> frozenset[str] | None:
    """The module classes whose sub-module calls the invariants read (None: every class).

    A sub-module call is traced per layer, so a plan that needs only Dropout layers'
    calls should not pay for every Linear's. Only an invariant *about* sub-module
    calls (``SUBMODULE_CALL`` its first API, the one its precondition speaks of) whose
    every disjunct names the class (``args.module == Dropout``) narrows the set; any
    other invariant that mentions the API needs every class.
    """
    classes: set[str] = set()
    for invariant in invariants:
        apis = [p.api_full_name for p in invariant.params if isinstance(p, APIParam)]
        if SUBMODULE_CALL not in apis:
            continue
        named = _classes_named(invariant) if apis[0] == SUBMODULE_CALL else None
        if named is None:
            return None
        classes.update(named)
    return frozenset(classes)


def _classes_named(invariant: Invariant[Any]) -> set[str] | None:
    precondition = invariant.precondition
    if precondition is None or precondition.inverted:
        return None
    named: set[str] = set()
    for conjunct in precondition.conjuncts:
        values = [
            c.values
            for c in conjunct
            if c.type == "constant" and c.prop_name == "args.module" and c.values
        ]
        if not values:
            return None
        named.update(str(v) for v in values[0])
    return named


def _needs_input_digest(param: object) -> bool:
    """DistinctArgument invariants compare content digests of a call's input."""
    return isinstance(param, ValueParam) and param.role == "input" and param.prop == "digest"


def untraceable_apis(invariants: InvariantSet, modules_to_instr: tuple[str, ...] = ()) -> list[str]:
    """APIs the invariants need that no tracer hook produces (their invariants are
    uncheckable in a run traced with these modules)."""
    needed = instrumentation_for(invariants)["apis"]
    return [api for api in needed if not traceable(api, modules_to_instr)]


def uncheckable_invariants(
    invariants: Iterable[Invariant[Any]], plan: TracingPlan
) -> dict[str, str]:
    """Invariants a run traced with ``plan`` cannot judge, by id, with the reason.

    An invariant is uncheckable when an input it needs was never traced: an API no
    hook produces (nor a ``--modules-to-instr`` module), an API or variable
    attribute the plan left out, or a variable of a model outside
    ``--models-to-track``. Checking it anyway would report a missing call as a
    violation (or its absence as "not triggered"), which would be a lie either way.
    """
    uncheckable: dict[str, str] = {}
    for invariant in invariants:
        reason = _missing_input(invariant, plan)
        if reason is not None:
            uncheckable[invariant.id] = reason
    return uncheckable


def _missing_input(invariant: Invariant[Any], plan: TracingPlan) -> str | None:
    for param in invariant.params:
        if isinstance(param, APIParam):
            api = param.api_full_name
            if not traceable(api, plan.modules_to_instr):
                return f"no tracer hook produces {api} (see --modules-to-instr)"
            if not plan.traces(api):
                return f"{api} was not traced (selective plan)"
        elif isinstance(param, (VarTypeParam, VarNameParam)):
            if param.attr_name == DATA and not plan.param_digests:
                return "parameter data digests were not traced (selective plan)"
            if param.attr_name == GRAD and not plan.grad_states:
                return "gradient states were not traced (selective plan)"
            if isinstance(param, VarNameParam) and not plan.tracks(param.var_name):
                return f"{param.var_name} is outside --models-to-track"
        elif _needs_input_digest(param) and not plan.input_digests:
            return "input digests were not traced (selective plan)"
    for api, phase, digest in sorted(needed_state(invariant)):
        recorded, with_digest = plan.state_at(api, phase)
        when = "before" if phase == "pre" else "after"
        if not recorded and plan.state_points is None:
            return f"the tracer records no variable state {when} {api}"
        if not recorded:
            return f"variable state {when} {api} was not traced (selective plan)"
        if digest and not with_digest:
            return f"data digests {when} {api} were not traced (selective plan)"
    return None


def _precondition_props(invariant: Invariant[Any]) -> Iterable[str]:
    precondition = invariant.precondition
    if precondition is None:
        return ()
    return (clause.prop_name for conj in precondition.conjuncts for clause in conj)
