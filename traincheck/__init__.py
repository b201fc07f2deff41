"""TrainCheck: catch silent bugs in PyTorch training while it runs.

Importing this package must stay cheap and must not import torch: it is
imported by the ``sitecustomize`` bootstrap of every traced process and by the
sidecar, which never needs torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from traincheck.tracer.meta import Annotation

__version__ = "0.1.0"

__all__ = ["__version__", "annotate"]


def annotate(**meta: object) -> Annotation:
    """Set custom meta-variables (e.g. ``annotate(phase="warmup")``) on later events.

    Usable as a plain call or as a context manager that restores the previous
    values on exit. Does nothing when the process is not traced.
    """
    from traincheck.tracer.annotate import annotate as _annotate

    return _annotate(**meta)
