"""A multiprocessing.Pool whose workers train (so their tracers open), closed and
joined cleanly: every worker exits normally. Forked workers leave through
multiprocessing's own exit path, which skips ``atexit``.

With ``--with-block`` the pool is used as ``with Pool() as pool:`` instead, whose
exit *terminates* the workers (SIGTERM). So that at least one of them certainly
vanishes without a goodbye, one worker is left inside a task that never ends, and
the block is left only once the stored trace (``TRAINCHECK_TRACE_DIR``) holds that
worker's events: it was traced, and is then terminated mid-task.

Usage: pool_workers.py [--start-method fork|spawn] [--with-block]
"""

import argparse
import multiprocessing
import os
import sys
import time

import torch

STARTED = None


def train_a_little(seed: int) -> float:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    loss = model(torch.randn(8, 4)).pow(2).mean()
    loss.backward()
    optimizer.step()
    return loss.item()


def remember(queue) -> None:
    global STARTED
    STARTED = queue


def train_then_hang(seed: int) -> None:
    train_a_little(seed)
    STARTED.put(os.getpid())
    time.sleep(3600)  # terminated long before


def stored_pids() -> set[int]:
    from traincheck.sidecar.store import read_trace

    return {batch.pid for batch in read_trace(os.environ["TRAINCHECK_TRACE_DIR"]).batches}


def wait_until_stored(pid: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while pid not in stored_pids():
        if time.monotonic() > deadline:
            sys.exit(f"worker {pid}'s events never reached the trace")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start-method", default="fork", choices=("fork", "spawn"))
    parser.add_argument("--with-block", action="store_true")
    args = parser.parse_args()
    context = multiprocessing.get_context(args.start_method)
    if args.with_block:
        started = context.SimpleQueue()
        with context.Pool(2, initializer=remember, initargs=(started,)) as pool:
            losses = pool.map(train_a_little, range(4))
            pool.apply_async(train_then_hang, (9,))
            wait_until_stored(started.get())
    else:
        pool = context.Pool(2)
        losses = pool.map(train_a_little, range(4))
        pool.close()
        pool.join()
    print("losses", " ".join(f"{loss:.4f}" for loss in losses), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
