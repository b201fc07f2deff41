"""A multiprocessing.Pool whose workers train (so their tracers open), closed and
joined cleanly: every worker exits normally. Forked workers leave through
multiprocessing's own exit path, which skips ``atexit``.

With ``--with-block`` the pool is used as ``with Pool() as pool:`` instead, whose
exit *terminates* the workers (SIGTERM): they vanish without a goodbye while the
job itself ends normally.

Usage: pool_workers.py [--start-method fork|spawn] [--with-block]
"""

import argparse
import multiprocessing
import sys

import torch


def train_a_little(seed: int) -> float:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    loss = model(torch.randn(8, 4)).pow(2).mean()
    loss.backward()
    optimizer.step()
    return loss.item()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start-method", default="fork", choices=("fork", "spawn"))
    parser.add_argument("--with-block", action="store_true")
    args = parser.parse_args()
    context = multiprocessing.get_context(args.start_method)
    if args.with_block:
        with context.Pool(2) as pool:
            losses = pool.map(train_a_little, range(4))
    else:
        pool = context.Pool(2)
        losses = pool.map(train_a_little, range(4))
        pool.close()
        pool.join()
    print("losses", " ".join(f"{loss:.4f}" for loss in losses), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
