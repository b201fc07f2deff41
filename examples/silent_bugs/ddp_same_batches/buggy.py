"""Buggy pipeline: DDP without a ``DistributedSampler``: every rank trains on the same batches.

``python buggy.py`` starts 2 ranks (it re-executes itself under torchrun).
Each rank builds the usual shuffled DataLoader with the run's seed, so both draw
the same batches in the same order. Nothing fails and the loss falls: DDP averages
identical gradients, and two ranks do the work of one (half the data per epoch is
never seen in parallel, the effective batch size is not what the config says).
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

if "RANK" not in os.environ:
    # Not a rank yet: become torchrun with 2 ranks (see healthy.py).
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                              "--nproc-per-node", "2", __file__, *sys.argv[1:]])  # fmt: skip

import torch.distributed as dist  # noqa: E402
from healthy import train  # noqa: E402
from synthetic import make_loader, parse_args  # noqa: E402


def main() -> None:
    args = parse_args(__doc__)
    dist.init_process_group("gloo")
    train(make_loader(args.batch_size, args.seed), args)  # the bug: no DistributedSampler
    dist.barrier()  # both ranks done before either tears gloo down
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
