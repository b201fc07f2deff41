"""Which digest path is cheaper for the training process, per tensor size.

The issue proposes snapshotting large tensors into shared memory so the sidecar
digests them outside the training process. The training thread then pays a copy
of the tensor's bytes into the segment instead of an xxh3 pass over them. This
measures, per tensor size, what the training thread pays on each path:

- ``in-process``: :func:`traincheck.tracer.digest.tensor_digest` (xxh3 over the
  raw bytes, zero-copy through numpy), what the tracer does today;
- ``shm copy (pooled)``: copying the bytes into an already-mapped ``/dev/shm``
  segment (owner-only file, reused): the cheapest the shared-memory path can be;
- ``shm copy (new segment)``: the same plus creating, sizing, mapping and
  unlinking a fresh segment per snapshot.

The sidecar's own digest of the segment would cost about ``in-process`` again, in
its own process; it is not counted against the training thread.

    .venv/bin/python scripts/bench/digest_paths.py
"""

from __future__ import annotations

import mmap
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from traincheck.tracer.digest import tensor_digest

SIZES = [1 << k for k in range(10, 29, 2)]  # 1 KiB .. 256 MiB
SHM_DIR = "/dev/shm"


def timed(fn: Callable[[], object], budget_s: float = 0.3, max_reps: int = 200) -> float:
    """Median seconds per call, over as many calls as fit the budget."""
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 3 or (time.perf_counter() < deadline and len(times) < max_reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def new_segment(nbytes: int) -> tuple[str, mmap.mmap]:
    path = os.path.join(SHM_DIR, f"traincheck-bench-{os.getpid()}-{time.monotonic_ns()}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, nbytes)
        return path, mmap.mmap(fd, nbytes)
    finally:
        os.close(fd)


def main() -> None:
    torch.set_num_threads(1)
    print(f"{'tensor':>10} | {'in-process':>12} | {'shm pooled':>12} | {'shm new':>12} | faster")
    for nbytes in SIZES:
        tensor = torch.randn(nbytes // 4)
        path, pooled = new_segment(nbytes)
        target = np.frombuffer(pooled, dtype=np.uint8)

        # Both copies start from the tensor, as the tracer would (same view cost as
        # the digest path pays), not from a ready-made numpy array.
        def copy_pooled(target: np.ndarray = target, tensor: torch.Tensor = tensor) -> None:
            with torch.no_grad():
                np.copyto(target, tensor.detach().reshape(-1).numpy().view(np.uint8))

        def copy_new(nbytes: int = nbytes, tensor: torch.Tensor = tensor) -> None:
            seg_path, seg = new_segment(nbytes)
            with torch.no_grad():
                source = tensor.detach().reshape(-1).numpy().view(np.uint8)
                np.copyto(np.frombuffer(seg, dtype=np.uint8), source)
            os.unlink(seg_path)  # the sidecar would unlink after digesting
            del seg

        digest_s = timed(lambda tensor=tensor: tensor_digest(tensor))
        pooled_s = timed(copy_pooled)
        new_s = timed(copy_new)
        del target, copy_pooled
        pooled.close()
        os.unlink(path)
        shm_s = min(pooled_s, new_s)
        if abs(shm_s - digest_s) <= 0.1 * digest_s:
            best = ("tie (within 10%)", 0.0)
        else:
            best = min(("in-process", digest_s), ("shm", shm_s), key=lambda x: x[1])
        print(
            f"{_size(nbytes):>10} | {digest_s * 1e6:>9.1f} us | {pooled_s * 1e6:>9.1f} us | "
            f"{new_s * 1e6:>9.1f} us | {best[0]}",
            flush=True,
        )


def _size(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024:
            return f"{nbytes} {unit}"
        nbytes //= 1024
    return f"{nbytes} TiB"


if __name__ == "__main__":
    main()
