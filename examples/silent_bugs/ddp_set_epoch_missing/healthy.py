"""Healthy pipeline: DDP over 2 spawned ranks (gloo, CPU), several short epochs.

``python healthy.py`` spawns 2 ranks (``torch.multiprocessing.spawn``); each passes
its rank to ``init_process_group``. Each rank reads its shard of a small dataset
through a shuffling DistributedSampler (4 steps per epoch at batch size 32), and
``sampler.set_epoch(epoch)`` before every epoch gives each epoch a new order.

The buggy twin is modelled on pytorch/pytorch#31771 and #11324 ("DistributedSampler
can't shuffle the dataset": without ``set_epoch`` every epoch has the same order),
fixed in many projects (lucidrains/DALLE-pytorch#230, Spijkervet/SimCLR#26).
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
        sampler.set_epoch(epoch)
        for inputs, labels in loader:
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
