"""The names of the files in a trace directory, and the manifest writer.

Every process that reads or writes a trace directory (the sidecar, the launcher,
the tracer's exit counters, the offline tools) takes the names from here, so a
file is spelled in one place. Torch-free.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MANIFEST_NAME = "run.json"
MANIFEST_FORMAT = "traincheck-trace"
MANIFEST_VERSION = 1
SEGMENT_GLOB = "segment-*.tcs"


def write_manifest(trace_dir: Path, manifest: dict[str, Any]) -> None:
    """Write ``run.json`` atomically so a reader never sees half a manifest."""
    manifest = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, **manifest}
    tmp = trace_dir / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, trace_dir / MANIFEST_NAME)
