"""Preconditions: *when* an invariant applies, deduced from positive and negative examples.

An example is the context of the record that triggered a hypothesis (a call, the
window before a call), flattened into properties:

- ``meta_vars.step``, ``meta_vars.stage`` and every custom meta-variable
  (``meta_vars.<key>``, from ``MetaChange`` events);
- ``args.<name>`` for every traced argument whose value is a bool or a string
  (a flag such as ``set_to_none``, a class name such as the optimizer's).

Numeric argument values (a learning rate, a batch size, a clip norm) are left
out: they are run configuration and differ between healthy runs, so a clause on
them would learn the configuration and alarm on the next run with another one.

Run-specific identities (pid, thread, timestamps, call ids, digests) are never
properties: a clause on them could not transfer to another run, which is the flaw
the published tool has (it can emit clauses on pid and tid).

Examples made of two records (two ranks' n-th calls, a call and the previous
one) also carry *pair* properties, ``~<prop>`` = ``consistent`` or ``unequal``,
saying whether the two records agree on ``<prop>``: these give the seed's
``consistent`` and ``unequal`` clauses (built by :func:`pair_props`).

A precondition is a DNF (an OR of ANDs of clauses), optionally ``inverted`` (NOT
of the whole OR, e.g. ``NOT(step == 0 OR stage == init)``). ``None`` stands for
"Unconditional".

Generalisation rules, so invariants learnt on a 20-step run hold on a 50-step run:

- integer meta-variables (``step``, ``epoch``, ...) grow with run length, so the
  only value a clause may name for them is ``0`` (the first iteration, where state
  is fresh in every run); ``step in {1..19}`` can never be produced;
- a disjunct of a direct (non-inverted) precondition must cover at least
  ``MIN_DISJUNCT_SUPPORT`` positive examples, so a single odd call cannot carve
  out its own rule;
- clauses are ranked meta-variables first, then arguments, then by name, so ties
  resolve the same way whatever order the traces were read in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Any, Literal

from traincheck.events import ArgValue

Scalar = bool | int | float | str
Props = Mapping[str, Scalar]
"""The properties of one example record (see the module docstring)."""

ClauseType = Literal["constant", "consistent", "unequal", "exist"]
CLAUSE_TYPES: tuple[str, ...] = ("constant", "consistent", "unequal", "exist")
CLAUSE_DTYPES: tuple[str, ...] = ("int", "str", "bool", "float", "any")
PROP_PREFIXES: tuple[str, ...] = ("meta_vars.", "args.")
ARG_CLAUSE_DTYPES: frozenset[str] = frozenset({"bool", "str"})
MICRO_BATCH = "meta_vars.micro_batch"
"""How many backward passes the process began in the current step before this record
(0: the first micro-batch of the step). Under gradient accumulation the forward, the
backward and what a library does per micro-batch repeat within one optimizer step;
see :func:`first_micro_batch_context`."""
ALWAYS_PRESENT: frozenset[str] = frozenset({"meta_vars.step", "meta_vars.stage", MICRO_BATCH})
MIN_DISJUNCT_SUPPORT = 2
PAIR_PREFIX = "~"
"""Marks a pair property: ``~meta_vars.stage`` = ``consistent:str`` or ``unequal:str``."""
PAIR_KINDS = ("consistent", "unequal")
MAX_CONJUNCT_CLAUSES = 2

_COUNTER_NONZERO = "<nonzero>"
"""Stands for every non-zero value of an integer meta-variable during deduction."""


def as_scalar(value: object) -> Scalar | None:
    """``value`` where a clause can name it (see :func:`dtype_of`), else None."""
    return value if dtype_of(value) is not None else None  # type: ignore[return-value]


def dtype_of(value: Any) -> str | None:
    """The clause dtype of a property value; None for values no clause can name."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return None if math.isnan(value) else "float"
    if isinstance(value, str):
        return "str"
    return None


def example_props(
    step: int,
    stage: str,
    meta: Mapping[str, Any],
    args: Iterable[ArgValue],
    micro_batch: int = 0,
) -> dict[str, Scalar]:
    """The properties of a record: meta-variables, the call's position in its step
    (:data:`MICRO_BATCH`) and scalar arguments, nothing else."""
    props: dict[str, Scalar] = {
        "meta_vars.step": step,
        "meta_vars.stage": stage,
        MICRO_BATCH: micro_batch,
    }
    for key, value in meta.items():
        scalar = as_scalar(value)
        if key not in ("step", "stage") and scalar is not None:
            props[_prop_name("meta_vars.", key)] = scalar
    for arg in args:
        scalar = as_scalar(arg.value)
        if scalar is not None and dtype_of(scalar) in ARG_CLAUSE_DTYPES:
            props[_prop_name("args.", arg.name)] = scalar
    return props


def without_run_counters(props: Props) -> dict[str, Scalar]:
    """``props`` without the counters that grow with the run (``step``, ``epoch``...).

    For relations whose examples are what one call got or returned (the value
    relations): a value seen only at the first iteration is a code path taken at a
    loop boundary (the training loader's first ``__iter__``), and runs of a few
    steps cannot tell "once per run" from "once per epoch", so "always V except at
    step 0" would judge the next epoch's boundary by a rule that never saw one. Fresh
    *state* at step 0 (no gradient yet) is another matter and other relations keep the
    counters. ``micro_batch`` stays: its values recur within every step.
    """
    return {
        prop: value
        for prop, value in props.items()
        if prop == MICRO_BATCH or not _is_counter(prop, dtype_of(value) or "")
    }


@lru_cache(maxsize=4096)
def _prop_name(prefix: str, name: str) -> str:
    """One string per property name, shared by every record that has it: relations
    keep records' props (DataOrder a whole epoch of them), and a name built anew for
    each record was most of their memory (11 MB of 26 on a 30,000-step trace)."""
    return prefix + name


def pair_props(current: Props, other: Props) -> dict[str, Scalar]:
    """The properties of a two-record example: ``current``'s, plus one pair property for
    every property both records have with the same dtype (equal: ``consistent``,
    else ``unequal``). Integer counters compare by value (same step or not)."""
    props: dict[str, Scalar] = dict(current)
    for prop, value in current.items():
        if prop.startswith(PAIR_PREFIX) or prop not in other:
            continue
        dtype = dtype_of(value)
        if dtype is None or dtype != dtype_of(other[prop]):
            continue
        kind = "consistent" if value == other[prop] else "unequal"
        props[PAIR_PREFIX + prop] = f"{kind}:{dtype}"
    return props


def _is_counter(prop: str, dtype: str) -> bool:
    return prop.startswith("meta_vars.") and dtype == "int"


FeatureKey = tuple[tuple[str, str, Scalar], ...]
"""A hashable, order-free form of an example's properties, used to deduplicate."""


def feature_key(props: Props) -> FeatureKey:
    """Collapse an example to what deduction can use; counters become 0 or non-zero.

    Training loops repeat the same context thousands of times with only the step
    changing; folding every non-zero counter into one value leaves a handful of
    distinct examples, so deduction cost does not grow with trace length.
    """
    items: list[tuple[str, str, Scalar]] = []
    for prop, value in props.items():
        dtype = dtype_of(value)
        if dtype is None:
            continue
        if _is_counter(prop, dtype) and value != 0:
            items.append((prop, "str", _COUNTER_NONZERO))
        else:
            items.append((prop, dtype, value))
    return tuple(sorted(items, key=_item_sort_key))


def _item_sort_key(item: tuple[str, str, Scalar]) -> tuple[str, str, str]:
    return (item[0], item[1], repr(item[2]))


@dataclass(frozen=True)
class Clause:
    """One condition on one property. ``values`` is only used by ``constant``.

    ``consistent`` and ``unequal`` compare the records of a two-record example (its
    pair property, see :func:`pair_props`); on a single record they reduce to
    "present" (one record agrees with itself and is distinct from no other).
    """

    type: ClauseType
    prop_name: str
    prop_dtype: str
    values: tuple[Scalar, ...] = ()

    def holds(self, props: Props) -> bool:
        value = props.get(self.prop_name)
        dtype = dtype_of(value)
        if dtype is None:
            return False
        if self.type in PAIR_KINDS:
            pair = props.get(PAIR_PREFIX + self.prop_name)
            return pair is None or str(pair).partition(":")[0] == self.type
        if self.type != "constant":
            return True
        if dtype == self.prop_dtype:
            return value in self.values
        if self.prop_dtype == "float" and dtype == "int" and isinstance(value, int):
            return float(value) in self.values
        return False

    def describe(self) -> str:
        name = self.prop_name.removeprefix("meta_vars.")
        if self.type == "consistent":
            return f"{name} is the same in both records"
        if self.type == "unequal":
            return f"{name} differs between the records"
        if self.type != "constant":
            return f"{name} is set"
        if len(self.values) == 1:
            return f"{name} == {self.values[0]!r}"
        return f"{name} in {{{', '.join(repr(v) for v in self.values)}}}"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "prop_name": self.prop_name,
            "additional_path": "None",
            "prop_dtype": self.prop_dtype,
            "values": list(self.values),
        }


@dataclass(frozen=True)
class Precondition:
    """An OR of ANDs of clauses; ``inverted`` negates the whole OR.

    ``context`` clauses must hold as well, outside the inversion: they say in which
    loop context the invariant was ever observed (see :func:`first_micro_batch_context`).
    No conjuncts and a context: the invariant is unconditional within its context.
    """

    conjuncts: tuple[tuple[Clause, ...], ...]
    inverted: bool = False
    context: tuple[Clause, ...] = ()

    def holds(self, props: Props) -> bool:
        if not all(c.holds(props) for c in self.context):
            return False
        if not self.conjuncts:
            return True
        any_true = any(all(c.holds(props) for c in conj) for conj in self.conjuncts)
        return any_true != self.inverted

    def describe(self) -> str:
        parts = [" AND ".join(c.describe() for c in conj) for conj in self.conjuncts]
        text = " OR ".join(
            f"({p})" if len(conj) > 1 else p for p, conj in zip(parts, self.conjuncts, strict=True)
        )
        if self.inverted:
            text = f"NOT ({text})"
        context = " AND ".join(_context_words(c) for c in self.context)
        if not context:
            return text
        return f"{text}, {context}" if text else context

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "inverted": self.inverted,
            "preconditions": [{"clauses": [c.to_json() for c in conj]} for conj in self.conjuncts],
        }
        if self.context:  # absent context leaves older files and ids unchanged
            data["context"] = [c.to_json() for c in self.context]
        return data


FIRST_MICRO_BATCH = Clause("constant", MICRO_BATCH, "int", (0,))
"""The context of an invariant only ever observed on the first micro-batch of a step."""


def _context_words(clause: Clause) -> str:
    return "on a step's first micro-batch" if clause == FIRST_MICRO_BATCH else clause.describe()


def first_micro_batch_context(
    precondition: Precondition | None, keys: Iterable[FeatureKey]
) -> Precondition | None:
    """Confine an invariant to the first micro-batch of a step when all its examples were.

    An invariant learned from runs without gradient accumulation has seen one backward
    pass per optimizer step; with accumulation the forward, the backward and what a
    library does per micro-batch (Trainer calls ``model.train()`` for each) repeat
    within a step, and the second backward legitimately finds gradients already there.
    Whether the reference runs ever ran a second micro-batch before a call is a fact
    about their loop structure, not a condition a negative example could reveal, so it
    is the one property an invariant is confined to without one: a run with another
    accumulation setting is judged on the first micro-batch of every step, and its
    later micro-batches only by invariants that saw such micro-batches. Calls after the
    backward pass (the optimizer step, clipping, a scheduler) keep ``micro_batch`` > 0
    in every run and stay judged, so a doubled scheduler call is still seen.
    """
    first_call = (MICRO_BATCH, "int", 0)
    seen_any = False
    for key in keys:
        seen_any = True
        if first_call not in key:
            return precondition
    if not seen_any:
        return precondition
    if precondition is None:
        return Precondition((), context=(FIRST_MICRO_BATCH,))
    return Precondition(
        precondition.conjuncts,
        precondition.inverted,
        (*precondition.context, FIRST_MICRO_BATCH),
    )


INIT_STAGE = "init"
"""The stage before the first training API runs (model building, data set-up)."""


def in_initialisation(props: Props) -> bool:
    """Whether a record comes from before training started (stage ``init``).

    Such records are no examples for inference and are judged by no invariant:
    set-up order varies between healthy scripts in ways that say nothing about
    training (where the model is moved, when the loader is first built), and
    learning from it breeds false alarms. No relation here is about
    initialisation; one that is would evaluate ``Precondition.holds`` directly.
    """
    return props.get("meta_vars.stage") == INIT_STAGE


def holds(precondition: Precondition | None, props: Props) -> bool:
    """Whether an invariant applies to a record: never during initialisation, else
    when its precondition holds (None = Unconditional)."""
    if in_initialisation(props):
        return False
    return precondition is None or precondition.holds(props)


# --------------------------------------------------------------------------- deduction

Atom = tuple[str, str, str, Scalar]
"""(kind, prop, dtype, value): kind ``constant``, ``exist`` (dtype/value unused),
``consistent`` or ``unequal`` (value unused)."""


@dataclass(frozen=True)
class Deduction:
    """Outcome of deduction: a precondition (None = Unconditional) or why there is none."""

    ok: bool
    precondition: Precondition | None = None
    reason: str = ""


UNSEPARABLE = "no precondition separates the positive examples from the negative ones"
TOO_SPECIFIC = "the precondition would rest on too few examples"


def deduce(positives: Mapping[FeatureKey, int], negatives: Mapping[FeatureKey, int]) -> Deduction:
    """Find a precondition true on every positive example and false on every negative.

    Tries a direct DNF first; if none exists, an inverted one (a DNF that covers
    the negatives and none of the positives, negated). Inverted preconditions are
    broadened with every single clause that excludes no positive: the invariant
    then applies in fewer places, which costs a little recall and saves false
    alarms (as in the seed: ``NOT(step == 0 OR stage == init)``).

    When every negative is at step 0 the inverted form is tried first: the first
    iteration is where state is fresh in every run, and what else marks it (the
    stage the tracer reports there) may differ in the next run, so "everything
    but step 0" transfers better than a direct rule such as ``stage == train``.
    """
    if not negatives:
        return Deduction(True, None)
    pos_views = _views(positives)
    neg_views = _views(negatives)
    attempts = [False, True]
    if all(("constant", "meta_vars.step", "int", 0) in view for view, _ in neg_views):
        attempts.reverse()
    for inverted in attempts:
        if inverted:
            found = _cover(neg_views, pos_views, broaden=True)
        else:
            found = _cover(pos_views, neg_views, broaden=False)
        if found is not None:
            return Deduction(True, Precondition(_to_clauses(found), inverted=inverted))
    return Deduction(False, reason=UNSEPARABLE)


def _views(examples: Mapping[FeatureKey, int]) -> list[tuple[frozenset[Atom], int]]:
    merged: dict[frozenset[Atom], int] = {}
    for key, count in examples.items():
        atoms = frozenset(_atoms(key))
        merged[atoms] = merged.get(atoms, 0) + count
    return sorted(merged.items(), key=lambda kv: sorted(map(_atom_sort_key, kv[0])))


def _atoms(key: FeatureKey) -> Iterable[Atom]:
    for prop, dtype, value in key:
        if prop.startswith(PAIR_PREFIX):
            kind, _, value_dtype = str(value).partition(":")
            if kind in PAIR_KINDS and value_dtype in CLAUSE_DTYPES:
                yield (kind, prop.removeprefix(PAIR_PREFIX), value_dtype, "")
            continue
        if value != _COUNTER_NONZERO:
            yield ("constant", prop, dtype, value)
        if prop not in ALWAYS_PRESENT:
            yield ("exist", prop, "any", "")


def _atom_sort_key(atom: Atom) -> tuple[int, str, str, str]:
    kind, prop, dtype, value = atom
    rank = 0 if prop.startswith("meta_vars.") else 1
    return (rank, prop, f"{kind}:{dtype}", repr(value))


Conjunct = frozenset[Atom]


def _cover(
    cover: list[tuple[frozenset[Atom], int]],
    exclude: list[tuple[frozenset[Atom], int]],
    *,
    broaden: bool,
) -> list[Conjunct] | None:
    """Greedy set cover of ``cover`` with conjuncts that match no ``exclude`` view."""

    def excluded(conj: Conjunct) -> bool:
        return any(conj <= view for view, _ in exclude)

    all_atoms = sorted({a for view, _ in cover for a in view}, key=_atom_sort_key)
    candidates = [frozenset([a]) for a in all_atoms if not excluded(frozenset([a]))]
    singles_cover = {i for i, (view, _) in enumerate(cover) if any(c <= view for c in candidates)}
    pairs: set[Conjunct] = set()
    for i, (view, _) in enumerate(cover):
        if i in singles_cover:
            continue
        for a, b in combinations(sorted(view, key=_atom_sort_key), MAX_CONJUNCT_CLAUSES):
            conj = frozenset([a, b])
            if a[1] != b[1] and not excluded(conj):
                pairs.add(conj)
    candidates += sorted(pairs, key=_conj_sort_key)

    uncovered = set(range(len(cover)))
    chosen: list[Conjunct] = []
    while uncovered:
        best, best_score = None, 0
        for conj in candidates:
            score = sum(cover[i][1] for i in uncovered if conj <= cover[i][0])
            if score > best_score:
                best, best_score = conj, score
        if best is None:
            return None
        if not broaden and best_score < MIN_DISJUNCT_SUPPORT:
            return None
        chosen.append(best)
        uncovered = {i for i in uncovered if not best <= cover[i][0]}
    if broaden:
        chosen += [c for c in candidates if len(c) == 1 and c not in chosen]
    return _simplify(chosen)


def _conj_sort_key(conj: Conjunct) -> list[tuple[int, str, str, str]]:
    return sorted(map(_atom_sort_key, conj))


def _simplify(conjuncts: list[Conjunct]) -> list[Conjunct]:
    """Drop conjuncts implied by a more general one (a superset of another's atoms)."""
    unique = sorted(set(conjuncts), key=lambda c: (len(c), _conj_sort_key(c)))
    kept: list[Conjunct] = []
    for conj in unique:
        if not any(other <= conj for other in kept):
            kept.append(conj)
    return kept


def _to_clauses(conjuncts: list[Conjunct]) -> tuple[tuple[Clause, ...], ...]:
    """Turn atoms into clauses, merging single-constant disjuncts on one property."""
    merged: dict[tuple[str, str], list[Scalar]] = {}
    result: list[tuple[Clause, ...]] = []
    for conj in conjuncts:
        atoms = sorted(conj, key=_atom_sort_key)
        if len(atoms) == 1 and atoms[0][0] == "constant":
            _, prop, dtype, value = atoms[0]
            merged.setdefault((prop, dtype), []).append(value)
            continue
        result.append(tuple(_clause(a) for a in atoms))
    for (prop, dtype), values in merged.items():
        values = sorted(set(values), key=repr)
        result.append((Clause("constant", prop, dtype, tuple(values)),))
    return tuple(sorted(result, key=lambda conj: [_clause_sort_key(c) for c in conj]))


def _clause(atom: Atom) -> Clause:
    kind, prop, dtype, value = atom
    if kind == "constant":
        return Clause("constant", prop, dtype, (value,))
    if kind in PAIR_KINDS:
        return Clause(kind, prop, dtype, ())  # type: ignore[arg-type]
    return Clause("exist", prop, "any", ())


def _clause_sort_key(clause: Clause) -> tuple[int, str, str, str]:
    rank = 0 if clause.prop_name.startswith("meta_vars.") else 1
    return (rank, clause.prop_name, clause.type, repr(clause.values))


# --------------------------------------------------------------------------- parsing


def precondition_from_json(data: Any) -> Precondition | None:
    """Parse one group's precondition; raise ValueError naming what is wrong.

    Accepts ``"Unconditional"`` and the published tool's spelling, a
    ``preconditions`` list whose single entry has ``"clauses": "Unconditional"``.
    """
    if data == "Unconditional":
        return None
    if not isinstance(data, dict):
        raise ValueError('a precondition group must be an object or "Unconditional"')
    inverted = data.get("inverted", False)
    if not isinstance(inverted, bool):
        raise ValueError("'inverted' must be true or false")
    context_items = data.get("context", [])
    if not isinstance(context_items, list):
        raise ValueError("'context' must be a list of clauses")
    context = tuple(clause_from_json(c) for c in context_items)
    items = data.get("preconditions")
    if not isinstance(items, list) or (not items and not context):
        raise ValueError("'preconditions' must be a non-empty list")
    conjuncts: list[tuple[Clause, ...]] = []
    for item in items:
        if not isinstance(item, dict) or "clauses" not in item:
            raise ValueError("each entry of 'preconditions' must be an object with 'clauses'")
        if item["clauses"] == "Unconditional":
            conjuncts = []
            break
        if not isinstance(item["clauses"], list) or not item["clauses"]:
            raise ValueError("'clauses' must be a non-empty list")
        conjuncts.append(tuple(clause_from_json(c) for c in item["clauses"]))
    if not conjuncts and not context:
        return None
    return Precondition(tuple(conjuncts), inverted=inverted, context=context)


def clause_from_json(data: Any) -> Clause:
    """Parse one clause; the dtype is looked up in a fixed table, never evaluated."""
    if not isinstance(data, dict):
        raise ValueError("a clause must be an object")
    ctype, prop, dtype = data.get("type"), data.get("prop_name"), data.get("prop_dtype")
    if ctype not in CLAUSE_TYPES:
        raise ValueError(
            f"unknown clause type {ctype!r} (expected one of {', '.join(CLAUSE_TYPES)})"
        )
    if not isinstance(prop, str) or not prop.startswith(PROP_PREFIXES):
        raise ValueError(
            f"clause property {prop!r} is not supported (must start with meta_vars. or args.)"
        )
    if data.get("additional_path", "None") not in ("None", None):
        raise ValueError(f"clause on {prop}: additional_path is not supported")
    if dtype not in CLAUSE_DTYPES or (dtype == "any" and ctype == "constant"):
        raise ValueError(f"clause on {prop}: unknown prop_dtype {dtype!r}")
    values = data.get("values", [])
    if not isinstance(values, list):
        raise ValueError(f"clause on {prop}: 'values' must be a list")
    if ctype == "constant":
        if not values:
            raise ValueError(f"clause on {prop}: a constant clause needs values")
        for value in values:
            actual = dtype_of(value)
            if actual != dtype and not (dtype == "float" and actual == "int"):
                raise ValueError(f"clause on {prop}: value {value!r} is not of type {dtype}")
        values = [float(v) if dtype == "float" else v for v in values]
    return Clause(ctype, prop, dtype, tuple(values) if ctype == "constant" else ())
