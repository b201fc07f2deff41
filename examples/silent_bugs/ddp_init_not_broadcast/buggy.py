"""Buggy pipeline: each rank seeds its RNG with seed + rank before building the model.

``python buggy.py`` spawns 2 ranks, exactly as healthy.py. Hand-written data
parallelism has no DDP constructor to broadcast rank 0's weights, so the per-rank
seed gives every rank different initial weights; the averaged gradients are then
applied to different models, and the replicas stay apart for the whole run while
every rank's loss still falls.

Modelled on facebookresearch/detr#544 ("a different seed for each rank before
building the model") and pytorch/torchtitan#166 (FSDP NO_SHARD never synchronised
the differently initialised ranks; the loss fell, but stagnated higher).
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ranks import WORLD_SIZE, spawn_ranks
from synthetic import MLP, make_dataset, parse_args, report


def average_gradients(model: torch.nn.Module) -> None:
    for param in model.parameters():
        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
        param.grad /= WORLD_SIZE


def train(rank: int, args) -> torch.nn.Module:
    torch.manual_seed(args.seed + rank)  # the bug: per-rank seed, and nothing broadcasts
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    dataset = make_dataset()
    sampler = torch.utils.data.DistributedSampler(dataset, seed=args.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, sampler=sampler)
    step, epoch = 0, 0
    while step < args.steps:
        sampler.set_epoch(epoch)
        for inputs, labels in loader:
            if step == args.steps:
                break
            optimizer.zero_grad()
            loss = F.cross_entropy(model(inputs), labels)
            loss.backward()
            average_gradients(model)
            optimizer.step()
            if rank == 0:
                report(step, loss)
            step += 1
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
