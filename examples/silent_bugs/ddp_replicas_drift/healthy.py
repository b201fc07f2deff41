"""Healthy pipeline: data-parallel training of an MLP (DDP, gloo, CPU), one shard per rank.

``python healthy.py`` starts 2 ranks (it re-executes itself under torchrun).
Every rank reads its own shard (DistributedSampler); DDP averages gradients
across ranks during ``backward()``, so after every optimizer step the replicas
hold identical weights.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

if "RANK" not in os.environ:
    # Not a rank yet (plain `python SCRIPT`, as every example runs): become torchrun with
    # 2 ranks on a free local port, before torch is imported. traincheck-run recognises
    # the torchrun agent and traces only the ranks.
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                              "--nproc-per-node", "2", __file__, *sys.argv[1:]])  # fmt: skip

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from synthetic import MLP, make_dataset, parse_args, report  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402


def make_sharded_loader(batch_size: int, seed: int) -> torch.utils.data.DataLoader:
    dataset = make_dataset()
    sampler = torch.utils.data.DistributedSampler(dataset, shuffle=True, seed=seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler)


def train(model: torch.nn.Module, forward: torch.nn.Module, args) -> None:
    """``forward`` is what the loop calls for the forward pass (healthy: the DDP wrapper)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    loader = make_sharded_loader(args.batch_size, args.seed)
    step, epoch = 0, 0
    while step < args.steps:
        loader.sampler.set_epoch(epoch)
        for inputs, labels in loader:
            if step == args.steps:
                break
            optimizer.zero_grad()
            loss = F.cross_entropy(forward(inputs), labels)
            loss.backward()
            optimizer.step()
            if dist.get_rank() == 0:
                report(step, loss)
            step += 1
        epoch += 1


def main() -> None:
    args = parse_args(__doc__)
    dist.init_process_group("gloo")
    torch.manual_seed(args.seed)
    model = DistributedDataParallel(MLP())
    train(model, model, args)
    dist.barrier()  # both ranks done before either tears gloo down
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
