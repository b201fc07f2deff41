"""Buggy pipeline: the forward pass calls the wrapped module (``model.module``), not DDP.

``python buggy.py`` starts 2 ranks (it re-executes itself under torchrun).
Nothing fails: DDP only all-reduces gradients after a forward pass *through the
wrapper*, so each rank steps on the gradients of its own shard alone and the
replicas drift apart from the first step, while every rank's loss still falls.
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
from healthy import train  # noqa: E402
from synthetic import MLP, parse_args  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402


def main() -> None:
    args = parse_args(__doc__)
    dist.init_process_group("gloo")
    torch.manual_seed(args.seed)
    model = DistributedDataParallel(MLP())
    train(model, model.module, args)  # the bug: bypasses DDP's gradient synchronisation
    dist.barrier()  # both ranks done before either tears gloo down
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
