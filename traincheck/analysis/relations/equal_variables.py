"""EqualVariablesRelation (ours): two variables equal at every observation stay equal.

``MLP.head.weight.data equals MLP.embed.weight.data at every
torch.optim.Optimizer.step``. Tied weights (an output layer sharing the input
embedding's storage), a layer shared by two branches: every healthy run shows
the two with the same content digest at every state the tracer took. Catches
the tie broken: the head re-created (or loaded, or ``.clone()``d) after tying,
so it trains on its own while the model is believed tied.

What the trace shows: the tracer names a tensor once. Two names for one tensor
appear when two distinct ``Parameter`` objects share storage (a tie made with
``b.weight.data = a.weight.data``, or a copy kept in sync); Hugging Face's
``tie_weights`` shares one ``Parameter`` object, which ``named_parameters()``
deduplicates, so there is one name and nothing to compare: that tie is
:mod:`~traincheck.analysis.relations.shared_parameter`'s, which reads the other
paths the tracer records with the variable. Content equality, not storage
identity, is what is compared: the digest says both.

Inference, linear in the states read: per (trace, process, API), the variables
are partitioned into classes of variables that had the same digest at every
observation so far (pre and post states of each call, set-up excluded). Each
observation refines the partition by (class, digest): variables only ever
split, and a variable absent from an observation its class-mates are in splits
from them (they must co-occur). At the end, variables whose classes agree in
every process of every trace form one class; a class of k names gives k-1
invariants (each name paired with the first one: equality is transitive), never
one per pair of parameters.

Guards: at least ``MIN_OBSERVATIONS`` observations in at least ``MIN_RUNS``
traces; names, not shapes, identify variables (a wider variant keeps the names);
a pair of which only one variable is observed at a call is not judged; the
stage rule of ConstantState (an invariant holds in the stages it was observed
in, in every stage when observed in train and eval).

In the file: ``[APIParam, VarNameParam, VarNameParam]``, attribute ``data``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from traincheck.analysis.calls import CallRecord, Signal
from traincheck.analysis.invariants import APIParam, VarNameParam
from traincheck.analysis.preconditions import INIT_STAGE, holds
from traincheck.analysis.relations.base import (
    DEFAULT_SETTINGS,
    Collector,
    InferOutcome,
    InferSettings,
    InvariantResult,
    Relation,
    RelationChecker,
    results_by_api,
)
from traincheck.analysis.relations.call_violation import call_violation
from traincheck.analysis.relations.constant_state import (
    accept_observed,
    call_stage,
    support_problem,
)
from traincheck.analysis.var_attrs import DATA
from traincheck.analysis.violations import Violation
from traincheck.events import VarState


class EqualParams(NamedTuple):
    """At every call of ``api``, ``first`` and ``second`` have the same content."""

    api: APIParam
    first: VarNameParam
    second: VarNameParam


@dataclass
class _Partition:
    """Variables of one process seen at one API, in classes of always-equal content."""

    trace: int
    class_of: dict[str, int] = field(default_factory=dict)
    observations: dict[str, int] = field(default_factory=dict)
    var_type: dict[str, str] = field(default_factory=dict)
    stages: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _next: int = 0

    def refine(self, states: dict[str, VarState], stage: str) -> None:
        """One observation (one phase of one call): split every class by digest, and
        split off the members the observation did not see."""
        new_ids: dict[tuple[int, int | None], int] = {}
        for name in self.class_of.keys() | states.keys():
            state = states.get(name)
            key = (self.class_of.get(name, -1), None if state is None else state.digest)
            new_id = new_ids.get(key)
            if new_id is None:
                new_id = new_ids[key] = self._next
                self._next += 1
            self.class_of[name] = new_id
            if state is not None:
                self.observations[name] = self.observations.get(name, 0) + 1
                self.var_type[name] = state.var_type
                self.stages[name].add(stage)


class _EqualCollector(Collector):
    def __init__(self) -> None:
        self.partitions: dict[tuple[int, int, str], _Partition] = {}
        """(trace, pid, api) -> its partition."""
        self._trace = -1

    def begin_trace(self) -> None:
        self._trace += 1

    def on_signal(self, signal: Signal) -> None:
        if not isinstance(signal, CallRecord) or not (signal.pre or signal.post):
            return
        stage = call_stage(signal)
        if stage == INIT_STAGE:
            return
        key = (self._trace, signal.start.pid, signal.api)
        partition = self.partitions.get(key)
        if partition is None:
            partition = self.partitions[key] = _Partition(self._trace)
        for phase in (signal.pre, signal.post):
            digested = {n: s for n, s in phase.items() if s.digest is not None}
            if digested:
                partition.refine(digested, stage)

    def classes(self, api: str) -> list[list[str]]:
        """Names (sorted) that were equal at every observation of ``api`` in every process
        that saw any of them, classes of two or more, in name order."""
        signature: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for index, ((_, _, seen_api), partition) in enumerate(sorted(self.partitions.items())):
            if seen_api != api:
                continue
            for name, class_id in partition.class_of.items():
                if partition.observations.get(name):
                    signature[name].append((index, class_id))
        grouped: dict[tuple[tuple[int, int], ...], list[str]] = defaultdict(list)
        for name, sig in signature.items():
            grouped[tuple(sig)].append(name)
        return sorted(sorted(names) for names in grouped.values() if len(names) > 1)

    def support(self, api: str, name: str) -> tuple[int, int, set[str], str]:
        """(observations, traces, stages, var_type) of ``name`` at ``api``."""
        observations, traces, stages, var_type = 0, set(), set(), ""
        for (trace, _, seen_api), partition in self.partitions.items():
            count = partition.observations.get(name, 0) if seen_api == api else 0
            if count:
                observations += count
                traces.add(trace)
                stages |= partition.stages[name]
                var_type = partition.var_type[name]
        return observations, len(traces), stages, var_type


class EqualVariablesRelation(Relation[EqualParams, _EqualCollector]):
    name = "EqualVariablesRelation"
    group = "equal_variables"
    params_type = EqualParams
    var_attrs = (DATA,)

    def new_collector(self) -> _EqualCollector:
        return _EqualCollector()

    def infer(
        self, collector: _EqualCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        for api in sorted({api for _, _, api in collector.partitions}):
            for names in collector.classes(api):
                first = names[0]
                observations, traces, stages, first_type = collector.support(api, first)
                for other in names[1:]:
                    other_type = collector.support(api, other)[3]
                    params = EqualParams(
                        APIParam(api),
                        VarNameParam(first_type, first, DATA),
                        VarNameParam(other_type, other, DATA),
                    )
                    accept_observed(
                        self,
                        params,
                        outcome,
                        reason=support_problem(observations, traces),
                        stages=stages,
                        observations=observations,
                    )
        return outcome

    def new_checker(self, results: Sequence[InvariantResult[EqualParams]]) -> RelationChecker:
        return _EqualChecker(results)

    def describe(self, params: EqualParams) -> str:
        api, first, second = params
        return f"{second.var_name}.data equals {first.var_name}.data at every {api.api_full_name}"


class _EqualChecker(RelationChecker):
    def __init__(self, results: Sequence[InvariantResult[EqualParams]]) -> None:
        self._by_api = results_by_api(results)

    def on_signal(self, signal: Signal) -> list[Violation]:
        if not isinstance(signal, CallRecord) or signal.api not in self._by_api:
            return []
        if call_stage(signal) == INIT_STAGE:
            return []
        violations = []
        for result in self._by_api[signal.api]:
            _, first, second = result.invariant.params
            judged, unequal = False, None
            for phase in (signal.pre, signal.post):
                a, b = phase.get(first.var_name), phase.get(second.var_name)
                if a is None or b is None or a.digest is None or b.digest is None:
                    continue
                judged = True
                if a.digest != b.digest and unequal is None:
                    unequal = (a, b)
            if not judged or not holds(result.invariant.precondition, signal.start.props):
                continue
            if unequal is None:
                result.record_pass()
                continue
            violations.append(result.record_violation(_violation(result, signal, *unequal)))
        return violations


def _violation(
    result: InvariantResult[EqualParams], record: CallRecord, first: VarState, second: VarState
) -> Violation:
    phase = "before" if first.phase == "pre" else "after"
    names = (first.var_name, second.var_name)
    return call_violation(
        result,
        record.start,
        what=f"{names[1]} and {names[0]} differ {phase} {record.api}",
        expected=f"{names[1]}.data equals {names[0]}.data (tied or shared in every healthy run)",
        observed=f"content digests differ (shapes {list(second.shape)} and {list(first.shape)}): "
        "the tie was broken",
        variables=names,
        events=(first, second),
    )
