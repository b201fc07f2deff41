"""Synthetic but realistic traces, built from the schema structs, for unit tests.

The event sequence per training iteration follows ``docs/architecture.md``:
``zero_grad`` (grad-state VarStates) · ``Module.__call__`` · ``Tensor.backward``
with nested ``autograd.backward`` (grad-state VarStates on the outer call) ·
``Optimizer.step`` (data digest + grad state VarStates) · ``MetaChange step``.

Bug variants are switches on :class:`LoopSpec`, so a test states the one thing
that differs from a healthy run.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from traincheck.analysis.checker import Checker
from traincheck.analysis.infer_engine import infer_from_streams
from traincheck.analysis.invariants import InvariantSet
from traincheck.analysis.relations.known import select_relations
from traincheck.analysis.violations import Violation
from traincheck.events import (
    SCHEMA_VERSION,
    ApiCall,
    ApiReturn,
    ArgValue,
    Batch,
    Event,
    MetaChange,
    RunEnd,
    RunStart,
    StoredEvent,
    VarState,
)
from traincheck.records import MANIFEST_FORMAT, MANIFEST_VERSION, RunManifest
from traincheck.sidecar.store import TraceWriter
from traincheck.tracedir import TraceDir
from traincheck.wire import encode_batch

ZERO_GRAD = "torch.optim.Optimizer.zero_grad"
FORWARD = "torch.nn.Module.__call__"
BACKWARD = "torch.Tensor.backward"
CLIP = "torch.nn.utils.clip_grad_norm_"
AUTOGRAD_BACKWARD = "torch.autograd.backward"
STEP = "torch.optim.Optimizer.step"
SDPA = "torch.nn.functional.scaled_dot_product_attention"
PARAMETER = "torch.nn.Parameter"

MODEL_PARAMS = ("Net.fc1.weight", "Net.fc1.bias", "Net.fc2.weight", "Net.fc2.bias")


@dataclass
class LoopSpec:
    """One synthetic training run. Defaults describe a healthy run."""

    steps: int = 20
    seed: int = 0
    pid: int = 4242
    rank: int = 0
    thread: int = 1
    params: tuple[str, ...] = MODEL_PARAMS
    zero_grad: bool = True
    set_to_none: bool = True
    stale_optimizer: bool = False
    """The optimizer holds parameters of a discarded model copy: step changes nothing."""
    eval_every: int = 0
    """Every this many steps, run an eval forward under no_grad (stage ``eval``)."""
    optimizer: str = "SGD"
    frozen: tuple[str, ...] = ()
    """Parameters frozen by mistake: still in the optimizer, never get a gradient."""
    second_optimizer: tuple[str, ...] = ()
    """Parameters also held by a second optimizer, stepped right after the first."""
    eval_left_on: bool = False
    """After the first eval phase, training forwards run with ``training=False``."""
    forward_dtype: str = "torch.float32"
    """dtype of the forward result (``torch.bfloat16`` under autocast)."""
    batches: str | None = None
    """The forward's ``input`` argument with a content digest: None (no input recorded),
    ``sharded`` (each rank and step its own batch), ``same_on_all_ranks`` (no
    DistributedSampler) or ``repeated`` (one batch fed at every step)."""
    data_seed: int = 7
    autocast_every: int = 0
    """Every this many steps, the forward runs under autocast (bfloat16 result)."""
    accumulate: int = 1
    """Micro-batches (forward + backward) per optimizer step (gradient accumulation)."""
    sharded: tuple[str, ...] = ()
    """Parameters whose contents differ between ranks by design (tensor parallel)."""
    requires_grad_off: tuple[str, ...] = ()
    """Parameters with ``requires_grad == False`` (frozen on purpose: list them in
    ``frozen`` too, so they get no gradient)."""
    unfreeze_at: int | None = None
    """From this step on, ``frozen`` and ``requires_grad_off`` are cleared (a frozen
    backbone unfrozen by mistake)."""
    tied: tuple[tuple[str, str], ...] = ()
    """(a, b): b is one tensor with a (the same content digest at every state)."""
    shared: tuple[tuple[str, str], ...] = ()
    """(owner, alias): one Parameter registered under two paths (``head.weight =
    embed.weight``): only the owner is traced, its states carry the alias."""
    untie_at: int | None = None
    """From this step on, the second of each ``tied`` pair is a tensor of its own, and
    each ``shared`` alias a Parameter of its own (traced under its path)."""
    shape: tuple[int, ...] = (8, 4)
    """The shape of every parameter (a wider variant has another)."""
    loss_scale: float | None = None
    """Record the loss at each backward (about 2.3, falling, with noise) times this
    factor (4.0: an accumulation loop that forgot to divide by 4); None: no loss."""
    loss_growth: float = 1.0
    """Factor the loss grows by at each step (1.3: a healthy run with a smaller batch
    or a larger lr whose loss climbs for a while before it falls)."""
    group_lrs: tuple[float, ...] = ()
    """Base lr of each param group, recorded at every optimizer step (``lr``, ``lr[1]``...)
    and decayed by a per-step schedule; empty: no lr recorded."""
    scheduled_groups: int | None = None
    """How many param groups the schedule writes (None: all; 1: the first group only)."""
    grad_norm: float | None = None
    """``clip_grad_norm_`` after backward, returning about this total norm (5% noise);
    None: no clipping."""
    grad_norm_jump_at: int | None = None
    """From this step on, the returned norm is ten times larger."""
    loader: str | None = None
    """``DataLoader.__next__`` calls (a batch digest each) before every step: None (not
    traced), ``shuffled`` (a new order every epoch), ``same_order`` (every epoch in the
    same order: a sampler never reshuffled) or ``restarted`` (the iterator re-created
    every step: the first batch, forever)."""
    epoch_len: int = 5
    """Batches per epoch of the training loader."""
    val_batches: int = 0
    """At every epoch's end, this many batches of a sequential validation loader."""
    state_steps: bool = False
    """Record the optimizer's own step count (``state_step``, as Adam keeps it)."""
    optimizer_restarted_at: int | None = None
    """At this step the optimizer is re-created without its state: its count restarts."""
    attention_dropout: float | None = None
    """Each forward calls ``scaled_dot_product_attention`` with ``dropout_p`` = this
    in training and 0.0 in evaluation; None: no such call."""
    attention_dropout_in_eval: bool = False
    """``dropout_p`` is passed unconditionally: evaluation drops attention too."""
    ema_every: int = 0
    """Every this many steps, after the step, an EMA of the weights is copied into the
    model (``Tensor.copy_`` per parameter) for an eval forward."""
    ema_restored: bool = True
    """The training weights are copied back after that eval (False: training goes on
    from the EMA weights)."""
    record_every: int = 1
    """A sampled trace: only every this many steps is recorded (the others still
    update the parameters and advance the step counter)."""


@dataclass
class _State:
    spec: LoopSpec
    rng: random.Random
    ts: int = 1_000_000
    call_id: int = 0
    step: int = 0
    stage: str = "init"
    digests: dict[str, int] = field(default_factory=dict)
    grads: dict[str, str] = field(default_factory=dict)
    training: bool = True

    def tick(self) -> int:
        self.ts += self.rng.randint(1_000, 50_000)
        return self.ts

    def next_id(self) -> int:
        self.call_id += 1
        return self.call_id

    def digest(self) -> int:
        return self.rng.getrandbits(63)


def training_events(spec: LoopSpec) -> list[Event]:
    """All events one traced process would send for ``spec``."""
    st = _State(spec, random.Random(spec.seed))
    model = list(spec.params)
    stale = [f"optimizer[0].param[{i}]" for i in range(len(model))]
    optimized = stale if spec.stale_optimizer else model
    for name in model + stale + [alias for _, alias in spec.shared]:
        st.digests[name] = st.digest()
        st.grads[name] = "none"
    _tie(st)
    events: list[Event] = [_run_start(st)]
    events += [_var(st, 0, "init", name) for name in model]
    events.append(MetaChange(st.tick(), spec.thread, "stage", "train", 0, "init"))
    st.stage = "train"
    st.training = True
    for k in range(spec.steps):
        st.step = k
        if k % spec.record_every:
            _unrecorded_step(st, optimized)
        else:
            events += _iteration(st, k, model, optimized)
        events.append(MetaChange(st.tick(), spec.thread, "step", k + 1, k, st.stage))
        st.step = k + 1
        if spec.eval_every and (k + 1) % spec.eval_every == 0:
            events += _eval_phase(st)
        if spec.ema_every and (k + 1) % spec.ema_every == 0:
            events += _ema_eval(st, model)
    events.append(RunEnd(st.tick(), len(events) + 1, 0, 0, "exit"))
    return events


def _iteration(st: _State, k: int, model: list[str], optimized: list[str]) -> Iterator[Event]:
    """One recorded training iteration: loader, zero_grad, micro-batches, clipping, step."""
    spec = st.spec
    if spec.loader is not None:
        yield from _next_batch(st, k)
    own = _own_aliases(st)
    if spec.zero_grad:
        yield from _zero_grad(st, optimized + own)
    for _ in range(spec.accumulate):
        yield from _forward(st, training=st.training)
        yield from _backward(st, [n for n in model + own if n not in _frozen(st)])
    if spec.grad_norm is not None:
        yield from _clip(st, spec.grad_norm)
    yield from _optimizer_step(st, optimized + own)
    if spec.second_optimizer:
        yield from _optimizer_step(st, list(spec.second_optimizer), "Adam")


def _unrecorded_step(st: _State, optimized: list[str]) -> None:
    """A step a sampled trace skips: the parameters change, nothing is sent."""
    for n in optimized:
        if n not in _frozen(st):
            st.digests[n] = st.digest()


def _unfrozen(st: _State) -> bool:
    return st.spec.unfreeze_at is not None and st.step >= st.spec.unfreeze_at


def _frozen(st: _State) -> tuple[str, ...]:
    return () if _unfrozen(st) else st.spec.frozen


def _untied(st: _State) -> bool:
    return st.spec.untie_at is not None and st.step >= st.spec.untie_at


def _own_aliases(st: _State) -> list[str]:
    """The ``shared`` aliases that are Parameters of their own (after ``untie_at``)."""
    return [alias for _, alias in st.spec.shared] if _untied(st) else []


def _aliases(st: _State, name: str) -> tuple[str, ...]:
    if _untied(st):
        return ()
    return tuple(alias for owner, alias in st.spec.shared if owner == name)


def _tie(st: _State) -> None:
    """Tied pairs share the first one's content, until ``untie_at``."""
    for a, b in st.spec.tied:
        if not _untied(st):
            st.digests[b] = st.digests[a]


def _run_start(st: _State) -> RunStart:
    s = st.spec
    return RunStart(
        st.tick(), 1_700_000_000_000_000_000, s.pid, 1, s.rank, s.rank, 1, "host",
        ["train.py"], "3.11.7", "2.13.0",
    )  # fmt: skip


def _var(st: _State, call_id: int, phase: str, name: str, digest: bool = True) -> VarState:
    grad = st.grads[name]
    return VarState(
        ts_ns=st.tick(),
        call_id=call_id,
        phase=phase,  # type: ignore[arg-type]
        thread=st.spec.thread,
        step=st.step,
        stage=st.stage,  # type: ignore[arg-type]
        var_name=name,
        var_type=PARAMETER,
        shape=st.spec.shape,
        dtype="torch.float32",
        device="cpu",
        requires_grad=_unfrozen(st) or name not in st.spec.requires_grad_off,
        grad=grad,  # type: ignore[arg-type]
        digest=st.digests[name] if digest else None,
        grad_digest=None if grad == "none" else st.digest(),
        aliases=_aliases(st, name),
    )


def _call(st: _State, api: str, args: tuple[ArgValue, ...] = (), parent: int = 0) -> ApiCall:
    return ApiCall(
        st.tick(),
        st.next_id(),
        parent,
        st.spec.thread,
        api,
        st.step,
        st.stage,
        args,  # type: ignore[arg-type]
    )


def _ret(st: _State, call: ApiCall, result: ArgValue | None = None) -> ApiReturn:
    return ApiReturn(st.tick(), call.call_id, st.spec.thread, call.api, st.step, st.stage, result)  # type: ignore[arg-type]


def _zero_grad(st: _State, names: list[str]) -> Iterator[Event]:
    args = (
        ArgValue("optimizer", "optimizer", st.spec.optimizer),
        ArgValue("set_to_none", "bool", st.spec.set_to_none),
    )
    call = _call(st, ZERO_GRAD, args)
    yield call
    yield from (_var(st, call.call_id, "pre", n, digest=False) for n in names)
    for n in names:
        if st.grads[n] != "none":
            st.grads[n] = "none" if st.spec.set_to_none else "zero"
    yield from (_var(st, call.call_id, "post", n, digest=False) for n in names)
    yield _ret(st, call)


def _forward(st: _State, training: bool) -> Iterator[Event]:
    spec = st.spec
    args: tuple[ArgValue, ...] = (
        ArgValue("module", "module", "Net"),
        ArgValue("training", "bool", training),
    )
    if spec.batches is not None:
        args += (ArgValue("input", "tensor", _batch_digest(st), (32, 784), "torch.float32", "cpu"),)
    autocast = bool(spec.autocast_every) and st.step % spec.autocast_every == 0
    if autocast:
        yield MetaChange(st.tick(), spec.thread, "autocast", "torch.bfloat16", st.step, st.stage)  # type: ignore[arg-type]
    call = _call(st, FORWARD, args)
    yield call
    if spec.attention_dropout is not None:
        p = spec.attention_dropout if training or spec.attention_dropout_in_eval else 0.0
        inner = _call(st, SDPA, (ArgValue("dropout_p", "float", p),), parent=call.call_id)
        yield inner
        yield _ret(st, inner)
    dtype = "torch.bfloat16" if autocast else spec.forward_dtype
    yield _ret(st, call, ArgValue("return", "tensor", None, (32, 10), dtype, "cpu", True))
    if autocast:
        yield MetaChange(st.tick(), spec.thread, "autocast", None, st.step, st.stage)  # type: ignore[arg-type]


LOADER_NEXT = "torch.utils.data.DataLoader.__next__"


def _next_batch(st: _State, k: int) -> Iterator[Event]:
    spec = st.spec
    epoch, index = divmod(k, spec.epoch_len)
    if spec.loader == "restarted":
        epoch, index = k, 0
    if index == 0 and epoch > 0 and spec.val_batches:
        for i in range(spec.val_batches):  # the same order every epoch: sequential
            yield from _loader_call(st, "1", i, False, f"val/{i}")
    order = "" if spec.loader in ("same_order", "restarted") else f"{epoch}/"
    yield from _loader_call(st, "0", index, True, f"{spec.data_seed}/{order}{index}")


def _loader_call(st: _State, loader: str, index: int, shuffle: bool, key: str) -> Iterator[Event]:
    args = (
        ArgValue("loader", "str", loader),
        ArgValue("index", "int", index),
        ArgValue("sampler", "str", "RandomSampler" if shuffle else "SequentialSampler"),
        ArgValue("shuffle", "bool", shuffle),
    )
    call = _call(st, LOADER_NEXT, args)
    yield call
    digest = random.Random(key).getrandbits(63)
    yield _ret(st, call, ArgValue("batch", "tensor", digest, (32, 784), "torch.float32", "cpu"))


def _batch_digest(st: _State) -> int:
    """A content digest of the batch: equal exactly when two calls saw the same data."""
    spec = st.spec
    rank = spec.rank if spec.batches == "sharded" else 0
    step = 0 if spec.batches == "repeated" else st.step
    return random.Random(f"{spec.data_seed}/{rank}/{step}/{st.stage}").getrandbits(63)


def _loss_args(st: _State) -> tuple[ArgValue, ...]:
    if st.spec.loss_scale is None:
        return ()
    loss = (0.5 + 1.8 * 0.9**st.step) * (1 + st.rng.uniform(-0.05, 0.05))
    loss *= st.spec.loss_growth**st.step
    return (ArgValue("loss", "tensor", loss * st.spec.loss_scale),)


def _lr_args(st: _State) -> tuple[ArgValue, ...]:
    scheduled = st.spec.scheduled_groups
    args = []
    for index, base in enumerate(st.spec.group_lrs):
        factor = 0.95**st.step if scheduled is None or index < scheduled else 1.0
        name = f"lr[{index}]" if index else "lr"
        args.append(ArgValue(name, "float", base * factor))
    return tuple(args)


def _count_args(st: _State) -> tuple[ArgValue, ...]:
    if not st.spec.state_steps:
        return ()
    restart = st.spec.optimizer_restarted_at
    count = st.step - restart if restart is not None and st.step >= restart else st.step
    return (ArgValue("state_step", "int", count),)


def _clip(st: _State, norm: float) -> Iterator[Event]:
    jump = st.spec.grad_norm_jump_at
    norm *= (10.0 if jump is not None and st.step >= jump else 1.0) * st.rng.uniform(0.95, 1.05)
    call = _call(st, CLIP, (ArgValue("max_norm", "float", 1.0),))
    yield call
    yield _ret(st, call, ArgValue("result", "tensor", norm, (), "torch.float32", "cpu", False))


def _backward(st: _State, names: list[str]) -> Iterator[Event]:
    outer = _call(st, BACKWARD, _loss_args(st))
    yield outer
    yield from (_var(st, outer.call_id, "pre", n, digest=False) for n in names)
    inner = _call(st, AUTOGRAD_BACKWARD, parent=outer.call_id)
    yield inner
    yield _ret(st, inner)
    for n in names:
        st.grads[n] = "nonzero"
    yield from (_var(st, outer.call_id, "post", n, digest=False) for n in names)
    yield _ret(st, outer)


def _optimizer_step(st: _State, names: list[str], optimizer: str = "") -> Iterator[Event]:
    optimizer = optimizer or st.spec.optimizer
    call = _call(
        st, STEP, (ArgValue("optimizer", "optimizer", optimizer), *_lr_args(st), *_count_args(st))
    )
    yield call
    yield from (_var(st, call.call_id, "pre", n) for n in names)
    for n in names:
        if st.grads[n] != "none":
            st.digests[n] = st.digest() + (st.spec.rank if n in st.spec.sharded else 0)
    _tie(st)
    yield from (_var(st, call.call_id, "post", n) for n in names)
    yield _ret(st, call)


def _eval_phase(st: _State) -> Iterator[Event]:
    yield MetaChange(st.tick(), st.spec.thread, "stage", "eval", st.step, st.stage)  # type: ignore[arg-type]
    st.stage = "eval"
    yield from _forward(st, training=False)
    st.training = not st.spec.eval_left_on
    yield MetaChange(st.tick(), st.spec.thread, "stage", "train", st.step, st.stage)  # type: ignore[arg-type]
    st.stage = "train"


COPY = "torch.Tensor.copy_"


def _ema_eval(st: _State, names: list[str]) -> Iterator[Event]:
    """Copy the EMA weights into the model, evaluate, and (healthy) copy the training
    weights back: each copy a traced ``Tensor.copy_`` on one parameter."""
    training = {n: st.digests[n] for n in names}
    yield from _copies(st, names, {n: st.digest() for n in names})
    yield from _eval_phase(st)
    if st.spec.ema_restored:
        yield from _copies(st, names, training)


def _copies(st: _State, names: list[str], contents: dict[str, int]) -> Iterator[Event]:
    for n in names:
        call = _call(st, COPY)
        yield call
        st.digests[n] = contents[n]
        yield _ret(st, call)


def batches(spec: LoopSpec, events: list[Event], batch_size: int = 40) -> list[Batch]:
    """Cut a process's events into consecutive batches, as the publisher would."""
    return [
        Batch(SCHEMA_VERSION, "run-test", spec.pid, spec.rank, seq, 0, events[i : i + batch_size])
        for seq, i in enumerate(range(0, len(events), batch_size))
    ]


def interleave(*per_process: list[Batch]) -> list[Batch]:
    """Round-robin the batches of several processes, as the sidecar receives them."""
    out: list[Batch] = []
    for i in range(max(len(b) for b in per_process)):
        out += [b[i] for b in per_process if i < len(b)]
    return out


def write_trace(
    trace_dir: Path, specs: LoopSpec | Iterable[LoopSpec], batch_size: int = 40
) -> Path:
    """Write a trace directory holding the run(s) of ``specs`` (several = several ranks)."""
    specs = [specs] if isinstance(specs, LoopSpec) else list(specs)
    trace_dir.mkdir(parents=True, exist_ok=True)
    writer = TraceWriter(trace_dir)
    per_process = [batches(s, training_events(s), batch_size) for s in specs]
    for batch in interleave(*per_process):
        writer.append(encode_batch(batch))
    writer.close()
    TraceDir(trace_dir).write_manifest(manifest(status="finished"))
    return trace_dir


def manifest(*, run_id: str = "run-test", status: str = "finished") -> RunManifest:
    """A ``run.json`` as a sidecar would write it for a run of ``run_id``."""
    return RunManifest(
        format=MANIFEST_FORMAT,
        format_version=MANIFEST_VERSION,
        run_id=run_id,
        command=["python", "train.py"],
        started_wall_ns=1,
        status=status,
        sidecar_pid=1,
        hostname="host",
        endpoint="ipc:///nowhere/events.sock",
        invariants=None,
    )


def stored_events(specs: LoopSpec | Iterable[LoopSpec], batch_size: int = 40) -> list[StoredEvent]:
    """The events of ``specs`` as ``Trace.events()`` would yield them, without disk."""
    specs = [specs] if isinstance(specs, LoopSpec) else list(specs)
    per_process = [batches(s, training_events(s), batch_size) for s in specs]
    return [StoredEvent(b.pid, b.rank, e) for b in interleave(*per_process) for e in b.events]


def infer_relation(relation: str, specs: Iterable[LoopSpec]) -> InvariantSet:
    """Invariants of one relation inferred from the runs of ``specs`` (one trace each)."""
    runs = [stored_events(spec) for spec in specs]
    return infer_from_streams(runs, select_relations([relation])).invariant_set


def violations_of(invariants: InvariantSet, spec: LoopSpec) -> list[Violation]:
    """What a checker fed the run of ``spec`` reports, the end of the run included."""
    checker = Checker(invariants)
    return [v for e in stored_events(spec) for v in checker.feed(e)] + checker.finish()
