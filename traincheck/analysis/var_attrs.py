"""How invariants name variable attributes and their states: the one spelling of them.

A variable param (``VarTypeParam`` / ``VarNameParam``) says which attribute of a
variable an invariant is about; a ``VarTypeParam`` also says how it goes from
``pre_value`` (before a call) to ``post_value`` (after). The words are the
published tool's, so its files stay readable:

- :data:`DATA`, the content, compared by digest only: a change is written
  ``anything -> changed`` (:data:`ANYTHING`, :data:`CHANGED`); values are never named;
- :data:`REQUIRES_GRAD`, whether the variable is trainable (a bool);
- :data:`IDENTITY`, which ``Parameter`` object a module path holds (SharedParameter:
  two paths, one Parameter; compared through the aliases the tracer records, no value);
- :data:`GRAD`, the gradient, in one of three states: no gradient tensor (``None``,
  JSON ``null``), :data:`ZERO` or :data:`NON_ZERO`;
- StateAtCall speaks about gradient *presence* only, :data:`NO_GRAD` or
  :data:`HAS_GRAD`, with :data:`ANYTHING` for the phase it says nothing about.

The tracer reports gradient states in its own spelling (:data:`traincheck.events.GradState`);
:data:`GRAD_VALUES` translates them. Every other module uses the names below, never the
words, so a word cannot drift between inference, checking, instrumentation and messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from traincheck.events import GradState

DATA: Final = "data"
"""The attribute for a variable's content (compared by digest)."""

GRAD: Final = "grad"
"""The attribute for a variable's gradient."""

REQUIRES_GRAD: Final = "requires_grad"
"""The attribute for whether a variable is trainable (ConstantState: a frozen parameter
stays frozen, a trained one stays trainable)."""

IDENTITY: Final = "identity"
"""The attribute for which ``Parameter`` object a path holds (SharedParameter: a tied
output layer is the same Parameter as the embedding; no digest is needed to judge it)."""

ANYTHING: Final = "anything"
"""A phase value that constrains nothing: the ``pre_value`` of a data change, the
phase a StateAtCall invariant does not speak about."""

CHANGED: Final = "changed"
"""The ``post_value`` of a data change: the content digest differs after the call."""

UNCHANGED: Final = "unchanged"
"""Messages only: a variable whose digest is the same after the call."""

ZERO: Final = "zero"
"""A gradient tensor that is all zeros."""

NON_ZERO: Final = "non_zero"
"""A gradient tensor with some non-zero value."""

NO_GRAD: Final = "None"
"""No gradient tensor, in words: StateAtCall's value and how messages show ``null``."""

HAS_GRAD: Final = "present"
"""StateAtCall's value for a variable that has a gradient tensor (zero or not)."""

GRAD_VALUES: Final[Mapping[GradState, str | None]] = {
    "none": None,
    "zero": ZERO,
    "nonzero": NON_ZERO,
}
"""The tracer's grad state -> its value in a ``VarTypeParam`` (None: no gradient tensor)."""


def grad_value_text(value: str | None) -> str:
    """A ``VarTypeParam`` grad value in words (``None`` for no gradient tensor)."""
    return NO_GRAD if value is None else value


def grad_state_text(state: GradState) -> str:
    """A tracer grad state in the words of invariants (``None``, ``zero``, ``non_zero``)."""
    return grad_value_text(GRAD_VALUES[state])


def grad_presence(state: GradState) -> str:
    """StateAtCall's value for a tracer grad state: :data:`NO_GRAD` or :data:`HAS_GRAD`."""
    return NO_GRAD if GRAD_VALUES[state] is None else HAS_GRAD
