"""Healthy pipeline: hand-written data parallelism over 2 spawned ranks (gloo, CPU).

``python healthy.py`` spawns 2 ranks (``torch.multiprocessing.spawn``); each passes
its rank to ``init_process_group``. There is no DDP wrapper: every rank builds
the model from the same seed, reads its own shard (DistributedSampler) and
averages the gradients with ``all_reduce`` before stepping, as in the PyTorch
"Writing distributed applications" tutorial. Same start plus same averaged
gradients keep the replicas identical.

Modelled on facebookresearch/detr#544 and pytorch/torchtitan#166: a per-rank seed
before the model is built gives every rank different initial weights, and
nothing (no DDP constructor broadcast) makes them equal again.
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
    torch.manual_seed(args.seed)
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
