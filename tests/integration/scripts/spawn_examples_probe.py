"""Train multi-process examples in 2 spawned ranks and report what torch says about them.

``python spawn_examples_probe.py OUT.json STEPS SCRIPT...`` spawns 2 ranks that join
one gloo group, then, in each rank and for each SCRIPT (an example whose module
has ``train(rank, args) -> model``), run its training for STEPS steps and gather
the result across ranks. Rank 0 writes, per SCRIPT:

- ``max_replica_difference``: the largest absolute difference between the two
  ranks' parameters after training (0.0 when the replicas are identical);
- ``epoch_orders``: the index lists rank 0's DistributedSampler yielded, one
  per epoch, recorded by wrapping ``DistributedSampler.__iter__``.

One spawn serves every script: starting the ranks costs far more than training.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD_SIZE = 2


def _load(script: str, index: int) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"probed_example_{index}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record_sampler_orders(orders: list[list[int]]) -> None:
    original = torch.utils.data.DistributedSampler.__iter__

    def recording_iter(self: Any) -> Iterator[int]:
        indices = list(original(self))
        orders.append(indices)
        return iter(indices)

    torch.utils.data.DistributedSampler.__iter__ = recording_iter  # type: ignore[method-assign]


def _probe(rank: int, init_method: str, out: str, steps: int, scripts: list[str]) -> None:
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD_SIZE)
    orders: list[list[int]] = []
    _record_sampler_orders(orders)
    results: dict[str, dict[str, Any]] = {}
    for index, script in enumerate(scripts):
        orders.clear()
        args = argparse.Namespace(seed=3, steps=steps, batch_size=32, lr=0.05)
        model = _load(script, index).train(rank, args)
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(WORLD_SIZE)]
        dist.all_gather(gathered, flat)
        results[script] = {
            "max_replica_difference": float((gathered[0] - gathered[1]).abs().max()),
            "epoch_orders": list(orders),
        }
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    dist.barrier()
    dist.destroy_process_group()


def main() -> int:
    out, steps, scripts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    with tempfile.TemporaryDirectory() as tmp:
        init_method = f"file://{Path(tmp) / 'rendezvous'}"
        mp.spawn(_probe, args=(init_method, out, steps, scripts), nprocs=WORLD_SIZE, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
