"""The checker shared by the relations whose invariants say "this content digest
differs from the one it is compared with" (DistinctArgument: two ranks' n-th inputs,
or a call's input and the previous one; DataOrder: a batch and the previous epoch's
at the same position, or the previous batch).

Both index their invariants by slot (API, argument or result name, scope), get a
list of comparisons per signal from their own pairing, and judge each against the
invariants of its slot; only the pairing and the words of a violation differ.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from traincheck.analysis.calls import Signal
from traincheck.analysis.invariants import APIParam, ValueParam
from traincheck.analysis.preconditions import Props, holds
from traincheck.analysis.relations.base import InvariantResult, RelationChecker
from traincheck.analysis.violations import Violation

Slot = tuple[str, str, str]
"""(api, argument or result name, scope)."""


class DigestComparison(Protocol):
    """One example: a digest compared with another of the same slot."""

    @property
    def api(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def distinct(self) -> bool: ...
    @property
    def props(self) -> Props: ...


ParamsT = TypeVar("ParamsT", bound=tuple[APIParam, ValueParam])
ComparisonT = TypeVar("ComparisonT", bound=DigestComparison)


class DistinctDigestChecker(RelationChecker, Generic[ParamsT, ComparisonT]):
    """Judges each comparison a signal yields against the invariants of its slot."""

    def __init__(self, results: Sequence[InvariantResult[ParamsT]]) -> None:
        self._by_slot: dict[Slot, list[InvariantResult[ParamsT]]] = defaultdict(list)
        for result in results:
            api, value = result.invariant.params
            self._by_slot[(api.api_full_name, value.name, str(value.value))].append(result)
        self.apis = {api for api, _, _ in self._by_slot}

    @abstractmethod
    def comparisons(self, signal: Signal) -> Sequence[ComparisonT]:
        """The comparisons ``signal`` yields (none for a signal of no interest)."""

    @abstractmethod
    def violation(
        self, result: InvariantResult[ParamsT], signal: Signal, c: ComparisonT
    ) -> Violation: ...

    def on_signal(self, signal: Signal) -> list[Violation]:
        violations = []
        for c in self.comparisons(signal):
            for result in self._by_slot.get((c.api, c.name, c.scope), ()):
                if not holds(result.invariant.precondition, c.props):
                    continue
                if c.distinct:
                    result.record_pass()
                else:
                    violations.append(result.record_violation(self.violation(result, signal, c)))
        return violations
