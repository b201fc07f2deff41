"""Which processes arm the tracer."""

from __future__ import annotations

import pytest

from traincheck.tracer.activation import Activation, decide

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
    assert decide(argv, environ)[0] is expected
