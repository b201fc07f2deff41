"""The tracer of one process: builds events, keeps call nesting, owns the publisher.

Hooks call :meth:`Tracer.begin_call` / :meth:`Tracer.end_call` /
:meth:`Tracer.record_params`; those build frozen event structs and append them,
nothing more (encoding happens at flush time). Internal failures are counted
and reported once per place on stderr, never raised into the training loop,
unless ``TRAINCHECK_DEBUG=1``.

Lifecycle: ``start`` (RunStart, timer, atexit) → events → ``close`` at interpreter
exit (RunEnd, last flush, counters file). A forked child gets a fresh, *gated*
tracer state (new publisher, new counters) and never touches the parent's
socket; a disarmed process (DataLoader worker) sends nothing.

In the layering, :class:`Tracer` implements the
:class:`~traincheck.tracer.recorder.Recorder` interface the hooks are typed
against, and imports no hook: the installer wires hooks to it, and it reaches its
hooks (to remove them when disarmed) and registers itself as the process's tracer
through :mod:`~traincheck.tracer.state`, whose fork handler calls
:meth:`Tracer.after_fork`. Its settings come from
:class:`~traincheck.tracer.config.TracerConfig`, never from the environment.
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import os
import socket
import sys
import threading
import time
import types
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import TYPE_CHECKING

from traincheck.events import (
    UNKNOWN_RANK,
    ApiCall,
    ApiReturn,
    ArgValue,
    MetaChange,
    RunEnd,
    RunStart,
    Scalar,
    StatePhase,
)
from traincheck.tracer import state
from traincheck.tracer.config import TracerConfig
from traincheck.tracer.diagnostics import log
from traincheck.tracer.meta import MetaState
from traincheck.tracer.publisher import Publisher
from traincheck.tracer.source import user_source
from traincheck.tracer.tracebacks import install_excepthook
from traincheck.tracing_plan import TracingPlan, load_plan

if TYPE_CHECKING:
    import torch

    from traincheck.tracer.varstate import StateCache


class Tracer:
    """Event construction, call nesting and meta-variables for one process."""

    def __init__(self, config: TracerConfig, *, gated: bool) -> None:
        self.config = config
        self.armed = True
        self.internal_errors = 0
        self._grad_enabled: Callable[[], bool] = _true
        self._inference_mode: Callable[[], bool] = _false
        self._reported: set[str] = set()
        self.plan = self._load_plan()
        self.recording = True
        self.state_cache: StateCache | None = None
        self._reset_process_state(gated=gated)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Make this the process's tracer and start publishing (unless gated)."""
        state.set_current(self)
        atexit.register(self.close)
        install_excepthook()
        if not self.gated:
            self.publisher.open()
            _close_at_multiprocessing_exit(self)

    def attach_torch(self, torch_module: types.ModuleType) -> None:
        """Read grad mode through torch once it is imported (never imported here).

        Called by the installer right before the hooks go in."""
        from traincheck.tracer.varstate import StateCache

        self._grad_enabled = torch_module.is_grad_enabled
        self._inference_mode = torch_module.is_inference_mode_enabled
        self.state_cache = StateCache()

    def open_gate(self) -> None:
        """A gated process just ran a training API: it is a training process after all."""
        self.gated = False
        self.publisher.open()
        _close_at_multiprocessing_exit(self)

    def disarm(self, reason: str) -> None:
        """Stop tracing for good in this process; queued events are discarded."""
        self.armed = False
        self.publisher.discard()
        state.release(self)

    def close(self) -> None:
        """At exit: RunEnd, last flush, close the socket, write the counters file."""
        if not self.armed or self.gated or self.publisher.closed:
            return
        self.armed = False
        try:
            counters = self.publisher.counters
            self.publisher.append(
                RunEnd(
                    ts_ns=time.monotonic_ns(),
                    events_sent=counters.events_sent,
                    events_dropped=counters.events_dropped,
                    batches_dropped=counters.batches_dropped,
                    reason="exit",
                )
            )
            counters = self.publisher.close()
            self._write_counters_file(dataclasses.asdict(counters))
        except Exception as exc:
            self.report_error("exit", exc)

    def _reset_process_state(self, *, gated: bool) -> None:
        """Per-process state: a forked child starts over with its own pid and socket."""
        self.pid = os.getpid()
        self.gated = gated
        self.meta = MetaState(self._on_meta_change)
        self._call_ids = itertools.count(1)
        self._local = threading.local()
        self._backward_depth = 0
        self.publisher = Publisher(
            endpoint=self.config.endpoint,
            run_id=self.config.run_id,
            pid=self.pid,
            rank=self.config.rank if self.config.rank_assigned else UNKNOWN_RANK,
            trace_dir=self.config.trace_dir,
            steps=self._steps_so_far,
            world_size=self.config.world_size,
            backlog_max_bytes=self.config.backlog_max_bytes,
        )
        self.publisher.append(self._run_start())

    def _steps_so_far(self) -> int:
        """Completed optimizer steps, for the run registry (read from the timer thread)."""
        return self.meta.step

    def after_fork(self) -> None:
        """In a forked child (called by :mod:`~traincheck.tracer.state`): start over,
        gated, leaving the parent's publisher and socket alone."""
        state.inherited_publishers.append(self.publisher)
        self._reset_process_state(gated=True)

    # -- events --------------------------------------------------------------------

    def begin_call(
        self, api: str, args: tuple[ArgValue, ...] = (), *, training_api: bool = True
    ) -> int:
        """Emit ``ApiCall`` for an API entered on this thread; return its call id.

        Only training APIs (forward, backward, zero_grad, step) move the stage;
        others (a scheduler built before training, ``model.to``) take it as it is.
        """
        if self.gated:
            self.open_gate()
        if training_api:
            stage = self.meta.enter_training_api(self._grad_enabled(), self._inference_mode())
        else:
            stage = self.meta.stage
        call_id = next(self._call_ids)
        stack = self._stack()
        parent = stack[-1] if stack else 0
        stack.append(call_id)
        self.publisher.append(
            ApiCall(
                time.monotonic_ns(),
                call_id,
                parent,
                threading.get_ident(),
                api,
                self.meta.step,
                stage,
                args,
                # The user's line, for alerts; outermost calls only (nested ones share it).
                user_source(skip=1) if parent == 0 else None,
            )
        )
        return call_id

    def end_call(
        self,
        call_id: int,
        api: str,
        *,
        result: ArgValue | None = None,
        exception: BaseException | None = None,
    ) -> None:
        """Emit ``ApiReturn`` and pop the call (and anything left above it) off the stack."""
        stack = self._stack()
        if call_id in stack:
            del stack[stack.index(call_id) :]
        self.publisher.append(
            ApiReturn(
                time.monotonic_ns(),
                call_id,
                threading.get_ident(),
                api,
                self.meta.step,
                self.meta.stage,
                result,
                type(exception).__name__ if exception is not None else None,
            )
        )

    def record_params(
        self,
        call_id: int,
        phase: StatePhase,
        params: Sequence[tuple[str, torch.Tensor]],
        *,
        with_digest: bool,
        aliases: Mapping[str, tuple[str, ...]],
    ) -> None:
        """Emit the parameters' states (grad state, and data digest if asked): one event."""
        from traincheck.tracer.varstate import param_states

        if self.plan.models_to_track is not None:
            params = [(name, p) for name, p in params if self.plan.tracks(name)]
        states = param_states(
            self,
            call_id,
            phase,
            params,
            with_digest=with_digest,
            cache=self.state_cache,
            aliases=aliases,
        )
        if states is not None:
            self.publisher.append(states)

    def flush_at_step(self) -> None:
        """An optimizer step ended: send what is queued, at most every few tens of ms."""
        self.publisher.flush_at_step()

    def learn_rank(self, rank: int, world_size: int) -> None:
        """Ranks come from the environment (torchrun's ``RANK``) until the process
        joins the default process group; ``mp.spawn`` / ``mp.Process`` jobs pass the
        rank to ``init_process_group`` instead, and every process would otherwise
        look like rank 0. Events still queued go out with the rank learned here."""
        if rank != self.publisher.rank and rank >= 0:
            self.publisher.set_rank(rank, world_size)

    def _on_meta_change(self, key: str, value: Scalar) -> None:
        if not self.armed:
            return
        if key == "step" and isinstance(value, int):
            self.recording = self.plan.records_step(value)
        if key == "stage" and value != "init" and self.publisher.rank == UNKNOWN_RANK:
            # Training started without a process group (and without RANK): a single
            # process, rank 0 of 1; events still queued go out with it.
            self.publisher.set_rank(self.config.rank, self.config.world_size)
        self.publisher.append(
            MetaChange(
                time.monotonic_ns(),
                threading.get_ident(),
                key,
                value,
                self.meta.step,
                self.meta.stage,
            )
        )

    def _stack(self) -> list[int]:
        try:
            return self._local.stack  # type: ignore[no-any-return]
        except AttributeError:
            self._local.stack = []
            return self._local.stack  # type: ignore[no-any-return]

    # -- backward nesting (process-wide: the autograd engine may run re-entrant
    # backward calls on its own threads) ------------------------------------------

    def enter_backward(self) -> bool:
        """Count a backward call; True if it is the outermost one in the process."""
        self._backward_depth += 1
        return self._backward_depth == 1

    def exit_backward(self) -> None:
        self._backward_depth = max(0, self._backward_depth - 1)

    # -- failures --------------------------------------------------------------------

    def report_error(self, where: str, exc: BaseException) -> None:
        """Count an internal failure; say it once per place; re-raise in debug mode."""
        self.internal_errors += 1
        if self.config.debug:
            raise exc
        if where not in self._reported:
            self._reported.add(where)
            log(f"internal error in {where} ignored ({type(exc).__name__}: {exc})")

    # -- helpers -----------------------------------------------------------------------

    def _load_plan(self) -> TracingPlan:
        """The launcher's plan, or full tracing when there is none or it is unreadable."""
        path = self.config.plan_path
        if path is None:
            return TracingPlan()
        try:
            return load_plan(path)
        except (OSError, ValueError) as exc:
            log(f"instrumentation plan {path} unreadable ({exc}); tracing everything")
            return TracingPlan()

    def _run_start(self) -> RunStart:
        return RunStart(
            ts_ns=time.monotonic_ns(),
            wall_ns=time.time_ns(),
            pid=self.pid,
            ppid=os.getppid(),
            rank=self.config.rank,
            local_rank=self.config.local_rank,
            world_size=self.config.world_size,
            host=socket.gethostname(),
            argv=list(getattr(sys, "argv", None) or sys.orig_argv[1:]),
            python=sys.version.split()[0],
            torch_version=_torch_version(),
        )

    def _write_counters_file(self, counters: Mapping[str, int]) -> None:
        """Best effort: ``TRACE_DIR/tracer-<pid>.json``, the typed exit counters record."""
        if self.config.trace_dir is None:
            return
        import msgspec

        from traincheck.records import TracerExitCounters
        from traincheck.tracedir import TraceDir

        trace = TraceDir(self.config.trace_dir)
        record = {"pid": self.pid, "rank": self.config.rank, **counters}
        try:
            trace.write_tracer_counters(msgspec.convert(record, TracerExitCounters))
        except (OSError, msgspec.ValidationError) as exc:
            log(f"could not write {trace.tracer_counters(self.pid)}: {exc}")


def _torch_version() -> str:
    """torch's version without importing torch (metadata), or the imported one."""
    module = sys.modules.get("torch")
    version = getattr(module, "__version__", None)
    if version is not None:
        return str(version)
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return ""
    except Exception as exc:  # metadata scanning trips over odd sys.path entries
        log(f"could not read torch's version: {exc}")
        return ""


def _true() -> bool:
    return True


def _false() -> bool:
    return False


def _close_at_multiprocessing_exit(tracer: Tracer) -> None:
    """A forked ``multiprocessing`` child (a Pool worker, an ``mp.Process``) ends with
    ``os._exit`` after multiprocessing's own exit function: ``atexit`` never runs
    there, so a worker that exited cleanly would look killed (no ``RunEnd``, no
    counters file). Multiprocessing's finalizers do run on that path; they are
    cleared when the child starts, which is why this is registered when the tracer
    opens, in the child itself."""
    import multiprocessing
    from multiprocessing import util

    if multiprocessing.parent_process() is not None:
        util.Finalize(None, tracer.close, exitpriority=100)
