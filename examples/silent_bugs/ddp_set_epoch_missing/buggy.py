"""Buggy pipeline: DistributedSampler.set_epoch() is never called.

``python buggy.py`` spawns 2 ranks, exactly as healthy.py. The sampler shuffles
with a generator seeded from ``seed + epoch``; without ``set_epoch`` the epoch
stays 0, so every epoch replays the first epoch's order (from step 4 at batch
size 32). Nothing fails and the loss still falls.

Modelled on pytorch/pytorch#31771 and #11324 ("DistributedSampler can't shuffle
the dataset": without ``set_epoch`` every epoch has the same order), fixed in
many projects (lucidrains/DALLE-pytorch#230, Spijkervet/SimCLR#26).
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ranks import WORLD_SIZE, spawn_ranks
from synthetic import MLP, make_dataset, parse_args, report
from torch.nn.parallel import DistributedDataParallel

NUM_SAMPLES = 256


def train(rank: int, args) -> torch.nn.Module:
    torch.manual_seed(args.seed)
    model = DistributedDataParallel(MLP())
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    dataset = make_dataset(NUM_SAMPLES)
    sampler = torch.utils.data.DistributedSampler(dataset, shuffle=True, seed=args.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, sampler=sampler)
    step, epoch = 0, 0
    while step < args.steps:
        for inputs, labels in loader:  # the bug: no sampler.set_epoch(epoch)
            if step == args.steps:
                break
            optimizer.zero_grad()
            loss = F.cross_entropy(model(inputs), labels)
            loss.backward()
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
