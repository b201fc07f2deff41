"""A progress bar for ``traincheck-infer``, shown only when stderr is a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def trace_progress(total: int) -> Iterator[Callable[[], None]]:
    """Yield an ``advance()`` to call after each trace; a no-op when not on a terminal."""
    if not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = ("reading traces", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("traces", total=total)
        yield lambda: progress.advance(task)
