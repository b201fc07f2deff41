"""Start the ranks of the multi-process examples the way most DDP tutorials do.

``torch.multiprocessing.spawn`` starts WORLD_SIZE processes; each one is given its
rank as an argument and passes it to ``init_process_group`` itself (no RANK in the
environment). They meet through a file in a private temporary directory rather
than a TCP port, so two examples running at once can never race for a port.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch.multiprocessing as mp

WORLD_SIZE = 2


def spawn_ranks(worker: Callable[..., None], args: argparse.Namespace) -> None:
    """Run ``worker(rank, init_method, args)`` in WORLD_SIZE spawned processes."""
    with tempfile.TemporaryDirectory() as tmp:
        init_method = f"file://{Path(tmp) / 'rendezvous'}"
        mp.spawn(worker, args=(init_method, args), nprocs=WORLD_SIZE, join=True)
