"""Which processes arm the tracer."""

from __future__ import annotations

import pytest

from traincheck.tracer.activation import Activation, decide
from traincheck.tracer.config import TracerConfig

PY = "/usr/bin/python3"


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        ([PY, "train.py"], {}, Activation.ARM),
        ([PY, "-m", "torch.distributed.run", "--nproc-per-node=2", "t.py"], {}, Activation.SKIP),
        ([PY, "/venv/bin/torchrun", "t.py"], {}, Activation.SKIP),
        ([PY, "/venv/bin/torchrun", "t.py"], {"RANK": "0"}, Activation.ARM),
        ([PY, "-m", "torch.distributed.run", "t.py"], {"RANK": "1"}, Activation.ARM),
        (
            [PY, "/site/torch/_inductor/compile_worker/__main__.py", "--pickler=x"],
            {},
            Activation.SKIP,
        ),
        (
            [
                PY,
                "-c",
                "from multiprocessing.spawn import spawn_main; spawn_main()",
                "--multiprocessing-fork",
            ],
            {},
            Activation.ARM_GATED,
        ),
        (
            [PY, "-c", "from multiprocessing.resource_tracker import main;main(5)"],
            {},
            Activation.ARM_GATED,
        ),
    ],
)
def test_decide(argv: list[str], environ: dict[str, str], expected: Activation) -> None:
    assert decide(argv, TracerConfig.from_environ(environ))[0] is expected


def test_only_the_launchers_own_child_is_armed_at_once() -> None:
    """Helpers the job starts (torch.compile's ``python -c`` probes), torchrun's
    ranks and a python under a shell script are gated: silent until they trace a call."""
    config = TracerConfig.from_environ({"TRAINCHECK_LAUNCHER_PID": "4242"})
    assert decide([PY, "train.py"], config, parent_pid=4242)[0] is Activation.ARM
    probe = [PY, "-c", "import torch; print(torch.__version__)"]
    assert decide(probe, config, parent_pid=5151)[0] is Activation.ARM_GATED
    rank = TracerConfig.from_environ({"RANK": "1", "TRAINCHECK_LAUNCHER_PID": "4242"})
    assert decide([PY, "train.py"], rank, parent_pid=7)[0] is Activation.ARM_GATED
    no_launcher = TracerConfig.from_environ({})
    assert decide(probe, no_launcher, parent_pid=5151)[0] is Activation.ARM  # as before
