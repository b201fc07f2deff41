"""Buggy pipeline: no_sync() skips the all-reduce on the wrong micro-batch.

``python buggy.py`` spawns 2 ranks, exactly as healthy.py. The synchronising
micro-batch is chosen with ``micro % 4 != 0``, off by one: the first micro-batch
of each step is all-reduced, the other three (among them the one before the
optimizer step) are not, so each rank steps with its own partial gradient and
the replicas drift apart from the first step while every loss still falls.

Modelled on modelscope/FunASR#3472: the condition ``batch_idx % accum_grad``
synchronised the first micro-batch and suppressed the synchronisation on the
micro-batch of the optimizer step, leaving rank-local accumulated gradients.
"""

import contextlib
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ranks import WORLD_SIZE, spawn_ranks
from synthetic import MLP, make_dataset, parse_args, report
from torch.nn.parallel import DistributedDataParallel

ACCUMULATION_STEPS = 4


def train(rank: int, args) -> torch.nn.Module:
    torch.manual_seed(args.seed)
    model = DistributedDataParallel(MLP())
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    dataset = make_dataset()
    sampler = torch.utils.data.DistributedSampler(dataset, shuffle=True, seed=args.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, sampler=sampler)
    micro, epoch = 0, 0
    while micro < args.steps * ACCUMULATION_STEPS:
        sampler.set_epoch(epoch)
        for inputs, labels in loader:
            if micro == args.steps * ACCUMULATION_STEPS:
                break
            last = (micro + 1) % ACCUMULATION_STEPS == 0
            first = micro % ACCUMULATION_STEPS == 0  # the bug: syncs the wrong micro-batch
            sync = contextlib.nullcontext() if first else model.no_sync()
            with sync:
                loss = F.cross_entropy(model(inputs), labels) / ACCUMULATION_STEPS
                loss.backward()
            if last:
                optimizer.step()
                optimizer.zero_grad()
                if rank == 0:
                    report(micro // ACCUMULATION_STEPS, loss)
            micro += 1
        epoch += 1
    return model


def worker(rank: int, init_method: str, args) -> None:
    dist.init_process_group(
        backend="gloo", init_method=init_method, rank=rank, world_size=WORLD_SIZE
    )
    train(rank, args)
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    spawn_ranks(worker, parse_args(__doc__))


if __name__ == "__main__":
    main()
