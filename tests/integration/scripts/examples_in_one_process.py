"""Run several single-process example scripts one after another in this one process.

``python examples_in_one_process.py STEPS SCRIPT...`` runs each SCRIPT as
``__main__`` with ``--steps STEPS``, printing ``== SCRIPT`` before its output, so
one interpreter start (and, under ``traincheck-run``, one tracer and one sidecar)
serves every example: the loss-equality test covers them all in seconds.
"""

from __future__ import annotations

import runpy
import sys


def main() -> None:
    steps, scripts = sys.argv[1], sys.argv[2:]
    for script in scripts:
        print(f"== {script}", flush=True)
        sys.argv = [script, "--steps", steps]
        runpy.run_path(script, run_name="__main__")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
