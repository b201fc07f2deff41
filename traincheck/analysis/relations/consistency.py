"""ConsistencyRelation: replicated variables hold the same value on every rank.

``every torch.nn.Parameter.data is identical across ranks after each
torch.optim.Optimizer.step``. In data-parallel training every rank keeps a
replica of the model and DDP averages gradients during ``backward()``, so after
the n-th optimizer step every rank holds bit-identical weights. Catches replicas
drifting apart: a forward pass through ``model.module`` instead of the DDP
wrapper (no gradient all-reduce), a rank that skips a step, a parameter DDP was
told to ignore. Each rank's loss still falls, so nothing else shows it.

The join that the published tool expresses as precondition clauses (same
``var_name`` — ``consistent`` —, different ``rank`` — ``unequal`` —, same step)
is built into the relation: the post-state of variable *v* after a process's
n-th call of the API is compared with the same variable after the n-th call of
the same API in every process of another rank. Ordinals, not the ``step``
meta-variable, pair the calls, so two optimizers per step still pair correctly.

Examples: one per (call, variable type) that finds a state of another rank to
compare with; positive when every variable of the type has the same digest.
A single-process run has no examples, so it neither yields nor checks this
invariant.

Replicated or sharded is learned per variable: with tensor parallelism a
parameter of the same name holds a different shard on each rank by design, so
the type-wide invariant has counter-examples and is rejected. The relation then
decides each variable on its own examples (one per call that compared it) and
writes one invariant per variable that stayed identical (``var`` is then a
``VarNameParam``): the replicated parameters of a tensor-parallel model are still
checked, and the sharded ones never are. Tied parameters are one tensor, which the
tracer reports under one name, so their equality needs no check here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from traincheck.analysis.calls import CallRecord, Signal
from traincheck.analysis.invariants import APIParam, VarNameParam, VarTypeParam
from traincheck.analysis.preconditions import feature_key, holds
from traincheck.analysis.relations.base import (
    DEFAULT_SETTINGS,
    Collector,
    InferOutcome,
    InferSettings,
    InvariantResult,
    KeyedExamples,
    Relation,
    RelationChecker,
    decide,
    results_by_api,
)
from traincheck.analysis.relations.call_violation import call_violation
from traincheck.analysis.var_attrs import DATA
from traincheck.analysis.violations import Violation
from traincheck.events import VarState

PAIRING_WINDOW_CALLS = 64
"""Calls of one API a rank may run ahead of another and still be paired with it.

Older states are forgotten, so memory is bounded by window times parameters, not by
trace length; ranks of a synchronous job are never this far apart."""

Mismatch = tuple[str, VarState, VarState, int]
"""(variable, this rank's state, the other rank's state, the other rank)."""


class ConsistencyParams(NamedTuple):
    """After each call of ``api``, every variable of ``var.var_type`` is identical on all ranks."""

    api: APIParam
    var: VarTypeParam | VarNameParam


@dataclass
class Compared:
    """The variables of one type compared with another rank's after one call."""

    names: list[str] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)


@dataclass
class _Replicas:
    """Post-states of the calls of one API, by call ordinal, variable and rank."""

    ordinals: Counter[int] = field(default_factory=Counter)
    states: dict[int, dict[str, dict[int, VarState]]] = field(default_factory=dict)
    pid_of_rank: dict[int, int] = field(default_factory=dict)

    def record(self, record: CallRecord) -> tuple[int, dict[str, VarState]]:
        """Number the call within its process; return (ordinal, its digested post-states).

        A new process for a rank already seen is a restarted job (elastic restart):
        the old processes' calls are not the new ones' peers, so pairing starts over.
        """
        pid, rank = record.start.pid, record.start.rank
        if self.pid_of_rank.setdefault(rank, pid) != pid:
            self.ordinals.clear()
            self.states.clear()
            self.pid_of_rank = {rank: pid}
        ordinal = self.ordinals[pid]
        self.ordinals[pid] += 1
        posts = {n: s for n, s in record.post.items() if s.digest is not None}
        return ordinal, posts

    def compare(
        self, ordinal: int, rank: int, posts: dict[str, VarState]
    ) -> dict[str, Compared] | None:
        """Per variable type, the variables compared with another rank and those that
        differ (None: nothing to compare with). Then remembers this rank's states for
        the ranks still to come."""
        known = self.states.setdefault(ordinal, {})
        compared: dict[str, Compared] | None = None
        for name, state in posts.items():
            others = known.setdefault(name, {})
            other = next(((r, s) for r, s in sorted(others.items()) if r != rank), None)
            if other is not None:
                compared = compared if compared is not None else {}
                found = compared.setdefault(state.var_type, Compared())
                found.names.append(name)
                if other[1].digest != state.digest:
                    found.mismatches.append((name, state, other[1], other[0]))
            others.setdefault(rank, state)
        self._forget_before(ordinal - PAIRING_WINDOW_CALLS)
        return compared

    def _forget_before(self, oldest: int) -> None:
        for ordinal in [o for o in self.states if o < oldest]:
            del self.states[ordinal]


class _ConsistencyCollector(Collector):
    def __init__(self) -> None:
        self.examples = KeyedExamples[tuple[str, str]]()
        """(api, var_type) -> calls after which every variable of the type equalled
        another rank's."""
        self.by_name = KeyedExamples[tuple[str, str, str]]()
        """(api, var_type, var_name) -> calls after which that variable equalled another
        rank's (decided only for types whose type-wide invariant was rejected)."""
        self._replicas: dict[str, _Replicas] = defaultdict(_Replicas)

    def begin_trace(self) -> None:
        self._replicas.clear()

    def on_signal(self, signal: Signal) -> None:
        if not isinstance(signal, CallRecord) or not signal.post:
            return
        replicas = self._replicas[signal.api]
        ordinal, posts = replicas.record(signal)
        compared = replicas.compare(ordinal, signal.start.rank, posts) if posts else None
        if not compared:
            return
        key = feature_key(signal.start.props)
        for var_type, found in compared.items():
            self.examples.add((signal.api, var_type), key, not found.mismatches)
            differ = {mismatch[0] for mismatch in found.mismatches}
            for name in found.names:
                self.by_name.add((signal.api, var_type, name), key, name not in differ)


class ConsistencyRelation(Relation[ConsistencyParams, _ConsistencyCollector]):
    name = "ConsistencyRelation"
    group = "consistency"
    params_type = ConsistencyParams
    var_attrs = (DATA,)

    def new_collector(self) -> _ConsistencyCollector:
        return _ConsistencyCollector()

    def infer(
        self, collector: _ConsistencyCollector, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome:
        outcome = InferOutcome(settings=settings)
        rejected: set[tuple[str, str]] = set()
        for (api, var_type), examples in collector.examples.in_order():
            params = ConsistencyParams(APIParam(api), VarTypeParam(var_type, DATA))
            before = len(outcome.invariants)
            decide(self, params, examples, outcome)
            if len(outcome.invariants) == before:
                rejected.add((api, var_type))
        for (api, var_type, name), examples in collector.by_name.in_order():
            if (api, var_type) in rejected:
                var = VarNameParam(var_type, name, DATA)
                decide(self, ConsistencyParams(APIParam(api), var), examples, outcome)
        return outcome

    def new_checker(self, results: Sequence[InvariantResult[ConsistencyParams]]) -> RelationChecker:
        return _ConsistencyChecker(results)

    def describe(self, params: ConsistencyParams) -> str:
        api, var = params
        subject = (
            f"{var.var_name}.{var.attr_name}"
            if isinstance(var, VarNameParam)
            else f"every {var.var_type}.{var.attr_name}"
        )
        return f"{subject} is identical across ranks after each {api.api_full_name}"


class _ConsistencyChecker(RelationChecker):
    def __init__(self, results: Sequence[InvariantResult[ConsistencyParams]]) -> None:
        self._by_api = results_by_api(results)
        self._replicas: dict[str, _Replicas] = defaultdict(_Replicas)

    def on_signal(self, signal: Signal) -> list[Violation]:
        if not isinstance(signal, CallRecord) or signal.api not in self._by_api:
            return []
        replicas = self._replicas[signal.api]
        ordinal, posts = replicas.record(signal)
        compared = replicas.compare(ordinal, signal.start.rank, posts) if posts else None
        if not compared:
            return []
        violations = []
        for result in self._by_api[signal.api]:
            var = result.invariant.params.var
            found = compared.get(var.var_type)
            if found is None:
                continue
            mismatches = found.mismatches
            if isinstance(var, VarNameParam):
                if var.var_name not in found.names:
                    continue
                mismatches = [m for m in mismatches if m[0] == var.var_name]
            if not holds(result.invariant.precondition, signal.start.props):
                continue
            if not mismatches:
                result.record_pass()
                continue
            violations.append(result.record_violation(_violation(result, signal, mismatches)))
        return violations


def _violation(
    result: InvariantResult[ConsistencyParams], record: CallRecord, mismatches: list[Mismatch]
) -> Violation:
    names = sorted(mismatch[0] for mismatch in mismatches)
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    ranks = f"rank {record.start.rank} and rank {mismatches[0][3]}"
    return call_violation(
        result,
        record.start,
        what=f"after {record.api}, {shown} differ between {ranks}",
        expected=f"every replica of {mismatches[0][1].var_type}.data is identical on all ranks "
        f"after each {record.api}",
        observed=f"{len(names)} variables differ (replicas drifting apart: gradients not "
        "synchronised?)",
        variables=tuple(names),
        events=tuple(s for _, mine, theirs, _ in mismatches[:2] for s in (mine, theirs)),
    )
