"""What every relation provides, and the inference steps they share.

A relation is an invariant template with three parts, kept in one module each:

- a :class:`Collector` that sees every call signal of every trace (hypothesis
  generation and example collection in one streaming pass);
- ``infer``: hypotheses → examples → precondition deduction → invariants;
- a :class:`RelationChecker`, the incremental checker the sidecar feeds live and
  ``traincheck-check`` feeds from disk (one code path).

A relation also declares the params it takes (``params_type``, a NamedTuple of
param classes, see :mod:`param_shape`), so that its inference, description and
checker handle typed params and a file is validated against the declaration once,
when it is read.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from traincheck.analysis.calls import Signal
from traincheck.analysis.invariants import (
    APIParam,
    Hints,
    Invariant,
    Param,
    ParamsT,
    make_invariant,
)
from traincheck.analysis.preconditions import (
    TOO_SPECIFIC,
    FeatureKey,
    Props,
    deduce,
    feature_key,
    first_micro_batch_context,
    in_initialisation,
)
from traincheck.analysis.relations.param_shape import ShapeT, param_classes, parse_params
from traincheck.analysis.violations import Violation

MIN_POSITIVE_EXAMPLES = 3
"""Fewer positives than this and a hypothesis could hold by chance: rejected."""

TOO_FEW_POSITIVES = f"fewer than {MIN_POSITIVE_EXAMPLES} positive examples"

IMPLIED = "implied by a stronger invariant that was kept"
"""A hypothesis that held but says less than another invariant of its relation."""


@dataclass
class Examples:
    """Positive and negative examples of one hypothesis, deduplicated by feature key."""

    positives: Counter[FeatureKey] = field(default_factory=Counter)
    negatives: Counter[FeatureKey] = field(default_factory=Counter)

    def add(self, props: Props, positive: bool) -> None:
        (self.positives if positive else self.negatives)[feature_key(props)] += 1

    @property
    def num_positive(self) -> int:
        return sum(self.positives.values())

    @property
    def num_negative(self) -> int:
        return sum(self.negatives.values())


HypothesisT = TypeVar("HypothesisT", bound=tuple[str, ...])


class KeyedExamples(Generic[HypothesisT]):
    """Examples per hypothesis, for relations where an example speaks about one
    hypothesis only, named by a key (Consistency's ``(api, var_type)``): the collector
    adds them as they stream by, ``infer`` walks the hypotheses in key order (so the
    order of the traces never changes the invariants)."""

    def __init__(self) -> None:
        self._examples: dict[HypothesisT, Examples] = defaultdict(Examples)

    def add(self, hypothesis: HypothesisT, context: FeatureKey, positive: bool) -> None:
        examples = self._examples[hypothesis]
        (examples.positives if positive else examples.negatives)[context] += 1

    def in_order(self) -> list[tuple[HypothesisT, Examples]]:
        return [(key, self._examples[key]) for key in sorted(self._examples)]


@dataclass
class Rejection:
    """A hypothesis that did not become an invariant, and why (for ``--debug``)."""

    relation: str
    text_description: str
    reason: str
    num_positive_examples: int
    num_negative_examples: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


DEFAULT_PRECOND_SAMPLING_THRESHOLD = 10_000


@dataclass(frozen=True)
class InferSettings:
    """Options of one inference run (from the CLI), passed down, never global.

    ``precond_sampling_threshold``: when a hypothesis has more *distinct*
    examples (after folding identical contexts) than this, precondition
    deduction sees a deterministic sample of them: the examples whose content
    hash is smallest, so the sample does not depend on trace order. ``None``
    disables sampling.
    """

    precond_sampling_threshold: int | None = DEFAULT_PRECOND_SAMPLING_THRESHOLD


DEFAULT_SETTINGS = InferSettings()


@dataclass
class InferOutcome:
    invariants: list[Invariant[Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    settings: InferSettings = DEFAULT_SETTINGS


def decide(
    relation: Relation[ShapeT, Any],
    params: ShapeT,
    examples: Examples,
    outcome: InferOutcome,
    hints: Hints = (),
) -> None:
    """Turn one hypothesis into an invariant, or record why it was rejected."""
    text = relation.describe(params)
    examples = _without_initialisation(examples)
    n_pos, n_neg = examples.num_positive, examples.num_negative
    reason = ""
    if n_pos < MIN_POSITIVE_EXAMPLES:
        reason = TOO_FEW_POSITIVES
    else:
        threshold = outcome.settings.precond_sampling_threshold
        deduction = deduce(
            sample_examples(examples.positives, threshold),
            sample_examples(examples.negatives, threshold),
        )
        reason = deduction.reason
        if deduction.ok and not _enough_under_precondition(deduction.precondition, examples):
            reason = TOO_SPECIFIC
    if reason:
        outcome.rejections.append(Rejection(relation.name, text, reason, n_pos, n_neg))
        return
    precondition = first_micro_batch_context(
        deduction.precondition, [*examples.positives, *examples.negatives]
    )
    invariant = make_invariant(
        relation.name,
        params,
        precondition,
        group=relation.group,
        text_description=text,
        num_positive_examples=n_pos,
        num_negative_examples=n_neg,
        hints=hints,
    )
    outcome.invariants.append(invariant)


def sample_examples(examples: Counter[FeatureKey], threshold: int | None) -> Counter[FeatureKey]:
    """At most ``threshold`` distinct examples, chosen by content hash (order-independent)."""
    if threshold is None or len(examples) <= threshold:
        return examples
    ranked = sorted(examples, key=lambda key: hashlib.sha256(repr(key).encode()).digest())
    return Counter({key: examples[key] for key in ranked[:threshold]})


def _enough_under_precondition(precondition: Any, examples: Examples) -> bool:
    """The precondition must leave enough positives in force, or it is a rule of one."""
    if precondition is None:
        return True
    in_force = sum(n for key, n in examples.positives.items() if precondition.holds(_props_of(key)))
    return in_force >= MIN_POSITIVE_EXAMPLES


def _props_of(key: FeatureKey) -> dict[str, Any]:
    return {prop: value for prop, _, value in key}


def _without_initialisation(examples: Examples) -> Examples:
    """The examples taken after training started (see ``preconditions.in_initialisation``)."""
    kept = Examples()
    for source, target in (
        (examples.positives, kept.positives),
        (examples.negatives, kept.negatives),
    ):
        for key, count in source.items():
            if not in_initialisation(_props_of(key)):
                target[key] += count
    return kept


@dataclass
class InvariantResult(Generic[ParamsT]):
    """How one invariant fared in a checked run.

    ``triggered`` counts the points where its precondition held (each is then
    passed or violated); ``unchecked`` counts points where the run lacked the data
    to judge it (e.g. no variable states), kept apart from "not triggered".
    """

    invariant: Invariant[ParamsT]
    triggered: int = 0
    passed: int = 0
    violated: int = 0
    unchecked: int = 0
    first_violation_step: int | None = None
    last_violation_step: int | None = None

    def record_pass(self) -> None:
        self.triggered += 1
        self.passed += 1

    def record_violation(self, violation: Violation) -> Violation:
        self.triggered += 1
        self.violated += 1
        if self.first_violation_step is None:
            self.first_violation_step = violation.step
        self.last_violation_step = violation.step
        return violation.numbered(self.violated)


class OnApi(Iterable[Param], Protocol):
    """Params about the calls of one API, named by their ``api`` field."""

    @property
    def api(self) -> APIParam: ...


OnApiT = TypeVar("OnApiT", bound=OnApi)


def results_by_api(
    results: Sequence[InvariantResult[OnApiT]],
) -> dict[str, list[InvariantResult[OnApiT]]]:
    """Index a checker's invariants by the API their ``api`` param names: the API whose
    calls the checker must look at (every call-judging relation starts this way)."""
    by_api: dict[str, list[InvariantResult[OnApiT]]] = defaultdict(list)
    for result in results:
        by_api[result.invariant.params.api.api_full_name].append(result)
    return by_api


class Collector(ABC):
    """Streams over the traces of one inference run, gathering hypotheses and examples."""

    def begin_trace(self) -> None:  # noqa: B027 - optional hook
        """A new trace starts: per-trace stream state must be reset."""

    @abstractmethod
    def on_signal(self, signal: Signal) -> None: ...

    def end_trace(self) -> None:  # noqa: B027 - optional hook
        """The trace ended: resolve examples that wait for the end of the stream."""


class RelationChecker(ABC):
    """Checks the invariants of one relation incrementally, signal by signal."""

    @abstractmethod
    def on_signal(self, signal: Signal) -> list[Violation]: ...

    def finish(self) -> list[Violation]:
        """End of stream: report what can only be known at the end."""
        return []


CollectorT = TypeVar("CollectorT", bound=Collector)


class Relation(ABC, Generic[ShapeT, CollectorT]):
    """An invariant template, with the params it takes and the collector it infers from."""

    name: ClassVar[str]
    group: ClassVar[str]
    """Example-group name used as the key of the precondition in the file."""
    params_type: type[ShapeT]
    """The params it takes, as a NamedTuple of param classes (see :mod:`param_shape`)."""
    var_attrs: ClassVar[tuple[str, ...] | None] = None
    """The attributes its variable params may name (None: any)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A malformed ``params_type`` fails when the relation is defined, not on a file."""
        super().__init_subclass__(**kwargs)
        if "params_type" in cls.__dict__:
            param_classes(cls.params_type)

    @abstractmethod
    def new_collector(self) -> CollectorT: ...

    @abstractmethod
    def infer(
        self, collector: CollectorT, settings: InferSettings = DEFAULT_SETTINGS
    ) -> InferOutcome: ...

    @abstractmethod
    def new_checker(self, results: Sequence[InvariantResult[ShapeT]]) -> RelationChecker: ...

    @abstractmethod
    def describe(self, params: ShapeT) -> str: ...

    def params_problem(self, params: ShapeT) -> str | None:
        """What keeps params of the declared types from being checkable (None: nothing),
        e.g. a value this relation never infers."""
        return None

    def parse_params(self, params: Sequence[Param]) -> ShapeT:
        """``params`` (as read from a file) as this relation's typed params; raise
        ValueError, one line naming the relation, when they do not fit it."""
        typed = parse_params(self.name, self.params_type, params, self.var_attrs)
        problem = self.params_problem(typed)
        if problem is not None:
            raise ValueError(f"{self.name}: {problem}")
        return typed

    def typed(self, invariant: Invariant[Any]) -> Invariant[ShapeT]:
        """The invariant with this relation's typed params. Invariants read from a file
        or inferred have them already; one built by hand from a plain tuple is parsed."""
        if isinstance(invariant.params, self.params_type):
            return invariant
        return replace(invariant, params=self.parse_params(tuple(invariant.params)))

    def checker_for(self, results: Sequence[InvariantResult[Any]]) -> RelationChecker:
        """The checker of ``results``, whose invariants are first given typed params."""
        for result in results:
            result.invariant = self.typed(result.invariant)
        return self.new_checker(results)
