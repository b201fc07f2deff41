"""Where the tracer's per-step time goes, measured inside one training process.

``overhead.py`` gives the number a user sees (whole runs, traced vs untraced),
but separate runs on a shared VM differ by +-20% from one another, which hides
anything smaller than that. This script removes the run-to-run noise: one
process trains the benchmark model (``workload_mlp.py``'s, MLP or CNN)
and installs / uninstalls the tracer's hooks in alternating blocks of steps, so
each traced block is compared with the untraced block just before it. It prints:

1. the median extra time per step, for full tracing and for plans that leave
   parts out (variable state, module calls, everything but the step hook), so
   the cost of each part is the difference between two rows;
2. the time spent inside each hook, measured in place (the hook bodies run
   "cold" between torch kernels and cost 2-3x what a warm micro-benchmark says).

Events go to a real ZeroMQ PULL socket drained by a child process (no sidecar:
storing and checking are the sidecar's cost, not the training process's).

    .venv/bin/python scripts/bench/tracer_cost.py --blocks 80
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORKLOAD = Path(__file__).resolve().parent / "workload_mlp.py"

DRAIN = """
import sys, zmq
sock = zmq.Context().socket(zmq.PULL)
sock.bind(sys.argv[1])
while True:
    sock.recv()
"""


def _before_issue_10() -> frozenset[str]:
    from traincheck import catalogue

    added = {
        *catalogue.FUNCTIONAL_APIS,
        *catalogue.GRAD_SCALER_APIS.values(),
        catalogue.AUTOCAST_ENTER,
        catalogue.AUTOCAST_EXIT,
        catalogue.SAMPLER_SET_EPOCH,
        catalogue.SAMPLER_ITER,
        catalogue.DATALOADER_NEXT,
        catalogue.TENSOR_REQUIRES_GRAD,
        catalogue.MODULE_STATE_DICT,
        catalogue.TORCH_SAVE,
        catalogue.TORCH_LOAD,
    }
    return catalogue.DEFAULT_APIS - added


SUBMODULE_CALL = "torch.nn.Module.forward"
BEFORE_ISSUE_10 = _before_issue_10()
"""The APIs traced before sub-module, functional, AMP and data tracing were added
(sub-module calls included: the next row leaves them out too)."""
STEP_HOOK_ONLY = frozenset({"torch.optim.Optimizer.step"})
BLOCK_STEPS = 10
SKIPPED_PER_BLOCK = 2
"""The first steps after (un)installing are not counted: caches refill."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=80, help="blocks per variant (even)")
    parser.add_argument("--timed-steps", type=int, default=500)
    parser.add_argument("--model", choices=("mlp", "cnn", "mnist"), default="mlp")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: the training thread's CPU time (time.thread_time_ns), which other "
        "processes on a shared machine do not inflate; it leaves out time the thread "
        "waits (none in this single-threaded loop)",
    )
    args = parser.parse_args()
    clock = time.thread_time_ns if args.clock == "cpu" else time.perf_counter_ns

    work = tempfile.mkdtemp(prefix="tc-cost-")
    endpoint = f"ipc://{work}/drain.sock"
    drain = subprocess.Popen([sys.executable, "-c", DRAIN, endpoint])
    try:
        time.sleep(0.3)
        os.environ["TRAINCHECK_ENDPOINT"] = endpoint
        os.environ["TRAINCHECK_RUN_ID"] = "tracer-cost"
        measure(args.blocks, args.timed_steps, args.model, clock)
    finally:
        drain.kill()


def measure(blocks: int, timed_steps: int, model_kind: str, clock: Callable[[], int]) -> None:
    from traincheck.tracer import bootstrap, state
    from traincheck.tracer.config import TracerConfig

    bootstrap._arm_if_wanted(TracerConfig.read())
    import torch

    from traincheck.tracer import installer
    from traincheck.tracer.runtime import Tracer

    tracer = state.current()
    assert isinstance(tracer, Tracer) and state.hooks is not None, "the tracer did not arm"
    hooks = Hooks(
        install=functools.partial(installer.install, tracer), uninstall=installer.uninstall
    )

    # The benchmark workload's own model and optimizer: run it for zero steps.
    argv = sys.argv
    sys.argv = [str(WORKLOAD), "--steps", "0", "--model", model_kind]
    try:
        workload = runpy.run_path(str(WORKLOAD), run_name="tracer_cost")
    finally:
        sys.argv = argv
    model, optimizer, loss_of = workload["model"], workload["optimizer"], workload["loss_of"]
    inputs = torch.randn(64, 1, 28, 28)
    labels = torch.randint(0, 10, (64,))

    def step() -> None:
        optimizer.zero_grad()
        loss_of(model(inputs), labels).backward()
        optimizer.step()

    for _ in range(20):
        step()

    full = tracer.plan
    no_state = dataclasses.replace(full, param_digests=False, grad_states=False)
    variants = {
        "full tracing": full,
        "no sub-module calls": dataclasses.replace(full, module_depth=0),
        "APIs traced before issue 10": dataclasses.replace(full, apis=BEFORE_ISSUE_10),
        "... and no sub-module calls": dataclasses.replace(
            full, apis=BEFORE_ISSUE_10 - {SUBMODULE_CALL}
        ),
        "no parameter digests": dataclasses.replace(full, param_digests=False),
        "no gradient states": dataclasses.replace(full, grad_states=False),
        "no variable state": no_state,
        "no state, no input digest": dataclasses.replace(no_state, input_digests=False),
        "step hook only, no state": dataclasses.replace(no_state, apis=STEP_HOOK_ONLY),
    }
    print(
        f"model: {model_kind}; extra time per step, {blocks // 2} traced blocks of"
        f" {BLOCK_STEPS} steps vs the untraced block before each"
    )
    print("(median of the differences, and its quartiles)")
    for name, plan in variants.items():
        tracer.plan = plan
        untraced, extra = alternate(hooks, step, blocks, clock)
        q1, _, q3 = statistics.quantiles(extra, n=4)
        print(
            f"  {name:28} +{statistics.median(extra):6.1f} us   ({q1:.0f}..{q3:.0f})"
            f"   untraced {statistics.median(untraced):7.1f} us"
        )

    tracer.plan = full
    print(f"\ntime inside each hook, full tracing, {timed_steps} steps (nested rows overlap)")
    for name, micros in hook_times(hooks, step, timed_steps):
        print(f"  {name:36} {micros:7.1f} us/step")


@dataclasses.dataclass(frozen=True)
class Hooks:
    """Puts all of the tracer's hooks and wrappers on torch, or takes them all off."""

    install: Callable[[], object]
    uninstall: Callable[[], None]


def alternate(
    hooks: Hooks, step: Callable[[], None], blocks: int, clock: Callable[[], int]
) -> tuple[list[float], list[float]]:
    """Median step time of each untraced block, and each traced block's excess over it."""
    untraced: list[float] = []
    extra: list[float] = []
    for block in range(blocks):
        traced = block % 2 == 1
        if traced:
            hooks.install()
        else:
            hooks.uninstall()
        times = []
        for i in range(BLOCK_STEPS):
            started = clock()
            step()
            if i >= SKIPPED_PER_BLOCK:
                times.append(clock() - started)
        median_us = statistics.median(times) / 1e3
        if traced:
            extra.append(median_us - untraced[-1])
        else:
            untraced.append(median_us)
    hooks.uninstall()
    return untraced, extra


def hook_times(hooks: Hooks, step: Callable[[], None], steps: int) -> list[tuple[str, float]]:
    """Wrap the tracer's hook entry points with timers, run, and unwrap."""
    from traincheck.tracer.hooks import TorchHooks
    from traincheck.tracer.runtime import Tracer

    spent: dict[str, int] = {}
    restore: list[tuple[type, str, Any]] = []
    targets = [
        (TorchHooks, "_step_pre"),
        (TorchHooks, "_step_post"),
        (TorchHooks, "_begin_zero_grad"),
        (TorchHooks, "_begin_backward"),
        (TorchHooks, "_end_call"),
        (TorchHooks, "_begin_module_call"),
        (TorchHooks, "_end_module_call"),
        (TorchHooks, "_begin_submodule_call"),
        (TorchHooks, "_end_submodule_call"),
        (Tracer, "record_params"),
        (Tracer, "begin_call"),
        (Tracer, "end_call"),
        (Tracer, "flush_at_step"),
    ]
    for owner, name in targets:
        original = getattr(owner, name)
        restore.append((owner, name, original))
        setattr(owner, name, _timed(original, f"{owner.__name__}.{name}", spent))
    hooks.install()
    try:
        for _ in range(steps):
            step()
    finally:
        hooks.uninstall()
        for owner, name, original in restore:
            setattr(owner, name, original)
    return sorted(((k, v / steps / 1e3) for k, v in spent.items()), key=lambda kv: -kv[1])


def _timed(function: Callable[..., Any], label: str, spent: dict[str, int]) -> Callable[..., Any]:
    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter_ns()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0) + time.perf_counter_ns() - started

    return timed


if __name__ == "__main__":
    main()
