"""Ranks in the trace whatever launched the ranks (here ``mp.spawn`` with explicit ranks)."""

from __future__ import annotations

from pathlib import Path

from conftest import SCRIPTS, cli, python_cmd, run_cli

from traincheck.events import UNKNOWN_RANK
from traincheck.sidecar.store import read_trace


def test_ranks_given_to_init_process_group_reach_the_trace(tmp_path: Path) -> None:
    """No RANK in the environment: each process passes rank= to init_process_group.
    Its batches must carry that rank (before, every process said rank 0, and two
    ranks looked like one: no cross-rank invariant could be learnt or checked)."""
    trace_dir = tmp_path / "trace"
    result = run_cli(
        [
            cli("traincheck-run"),
            "--output-dir",
            str(trace_dir),
            "--",
            *python_cmd(SCRIPTS / "spawn_ddp.py", "--steps", "3"),
        ],
        timeout_s=240,
    )
    assert result.returncode == 0, result.stderr
    assert sum(line.startswith("rank 1 step 2 loss") for line in result.stdout.splitlines()) == 1
    ranks_by_pid: dict[int, set[int]] = {}
    for batch in read_trace(trace_dir).batches:
        ranks_by_pid.setdefault(batch.pid, set()).add(batch.rank)
    # One process speaks as rank 1 (from the moment it joined the group: events still
    # queued then go out as rank 1 too), the other as rank 0. What went out before a
    # process knew its rank says "unknown", never a wrong 0: the rank-1 process never
    # sent a batch as rank 0, and the spawning parent (no group, no step) has no rank.
    as_rank_1 = [pid for pid, ranks in ranks_by_pid.items() if 1 in ranks]
    assert len(as_rank_1) == 1, (ranks_by_pid, result.stderr)
    assert ranks_by_pid[as_rank_1[0]] <= {UNKNOWN_RANK, 1}, ranks_by_pid
    as_rank_0 = [pid for pid, ranks in ranks_by_pid.items() if 0 in ranks]
    assert len(as_rank_0) == 1 and as_rank_0[0] != as_rank_1[0], ranks_by_pid
    others = set(ranks_by_pid) - {as_rank_0[0], as_rank_1[0]}
    assert all(ranks_by_pid[pid] == {UNKNOWN_RANK} for pid in others), ranks_by_pid
