"""Every lost batch is counted once, and a process that exited normally is finished.

The tracer evicts its oldest backlog batches when no sidecar takes them (counted
as dropped, their numbers written to ``tracer-<pid>.json`` at exit); the sidecar
sees the same batches as sequence gaps. Reading the exit counters, it must not
count them again as missing -- and must not call a process that wrote them killed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import zmq

from traincheck.events import Batch, MetaChange, RunEnd, RunStart
from traincheck.records import TracerExitCounters
from traincheck.sidecar.receiver import IntakeLedger, read_exit_counters
from traincheck.tracer.publisher import Publisher
from traincheck.wire import decode_batch


def _event(i: int) -> MetaChange:
    return MetaChange(i, 1, "k", i, 0, "init")


def _batch(seq: int, pid: int = 7, events: list | None = None) -> Batch:
    return Batch(1, "r", pid, 0, seq, 0, events or [_event(seq)])


def _run_start(pid: int) -> RunStart:
    return RunStart(0, 0, pid, 1, 0, 0, 1, os.uname().nodename, ["x"], "3", "")


def test_evicted_batches_are_dropped_not_also_missing(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/s.sock"
    publisher = Publisher(
        endpoint=endpoint, run_id="r", pid=7, rank=0, max_events=10, backlog_max_bytes=1500
    )
    publisher.open()
    for i in range(400):  # no sidecar yet: the backlog ring evicts its oldest batches
        publisher.append(_event(i))
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.bind(endpoint)
    try:
        batches = []
        deadline = time.monotonic() + 10
        while publisher.backlog_batches and time.monotonic() < deadline:
            publisher.flush()
            while pull.poll(50):
                batches.append(decode_batch(pull.recv()))
        counters = publisher.close()
        while pull.poll(200):
            batches.append(decode_batch(pull.recv()))
    finally:
        pull.close(linger=0)
        context.term()
    assert counters.batches_dropped > 0 and counters.evicted_seq_ranges
    ledger = IntakeLedger()
    for batch in batches:
        ledger.record_batch(batch)
    producer = ledger.producers[7]
    assert producer.batches_missing == counters.batches_dropped  # before: counted twice
    (tmp_path / "tracer-7.json").write_text(
        json.dumps({"pid": 7, "rank": 0, **dataclasses.asdict(counters)})
    )
    ledger.adopt_exit_counters(read_exit_counters(tmp_path))
    assert producer.batches_missing == 0
    assert producer.batches_dropped == counters.batches_dropped
    sent = max(b.seq for b in batches) + 1
    assert len(batches) + producer.batches_dropped == sent  # each batch accounted once


def test_real_gaps_stay_missing() -> None:
    ledger = IntakeLedger()
    for seq in (0, 1, 5, 6):  # 2..4 lost between tracer and sidecar
        ledger.record_batch(_batch(seq))
    ledger.adopt_exit_counters(
        {7: TracerExitCounters(pid=7, events_dropped=3, batches_dropped=1,
                               evicted_seq_ranges=[(4, 4)])}
    )  # fmt: skip
    assert ledger.producers[7].batches_missing == 2
    assert ledger.producers[7].batches_dropped == 1


def test_batches_sent_after_the_last_one_received_are_missing_not_silent() -> None:
    """The drain gave up, or a detach was in flight: no gap shows the lost tail, the
    tracer's exit counters do (batches it dropped itself are not counted twice)."""
    ledger = IntakeLedger()
    for seq in range(6):
        ledger.record_batch(_batch(seq))
    ledger.adopt_exit_counters({7: TracerExitCounters(pid=7, batches_sent=10)})
    assert ledger.producers[7].batches_missing == 4

    ledger = IntakeLedger()
    for seq in (0, 1, 2, 4, 5):  # 3 evicted from the backlog, 6 and 7 dropped at exit
        ledger.record_batch(_batch(seq))
    ledger.adopt_exit_counters(
        {7: TracerExitCounters(pid=7, events_dropped=9, batches_dropped=3, batches_sent=5,
                               evicted_seq_ranges=[(3, 3)])}
    )  # fmt: skip
    assert ledger.producers[7].batches_missing == 0


def test_a_process_that_exited_before_we_heard_its_end_is_finished_not_killed() -> None:
    ledger = IntakeLedger(joined_mid_run=True)
    ledger.expect(11, 0, os.uname().nodename)  # from the registry, then it exited
    ledger.expect(12, 1, os.uname().nodename)  # SIGKILLed: no counters file
    ledger.record_batch(_batch(3, pid=11, events=[_run_start(11)]))
    ledger.adopt_exit_counters(
        {
            11: TracerExitCounters(pid=11),
            99: TracerExitCounters(pid=99, events_dropped=5, batches_dropped=1),
        }
    )
    assert [p.pid for p in ledger.unfinished()] == [12]
    assert ledger.producers[11].end_reason.startswith("exit")
    assert 99 not in ledger.producers  # a process we never expected is not invented


def test_malformed_counters_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "tracer-1.json").write_text('{"pid": 1, "events_dropped": 2, "batches_dropped": 1}')
    (tmp_path / "tracer-2.json").write_text('{"pid": 2, "events_dropped": "__import__(1)"}')
    (tmp_path / "tracer-3.json").write_text("[" * 100_000)
    (tmp_path / "tracer-4.json").write_text('{"pid": -4}')
    (tmp_path / "tracer-5.json").write_text(
        '{"pid": 5, "evicted_seq_ranges": [[1, 2], [3], "x", [9, 1], [true, 2]]}'
    )
    (tmp_path / "tracer-6.json").write_text('{"pid": 6, "evicted_seq_ranges": [[1, 2], [4, 5]]}')
    counters = read_exit_counters(tmp_path)
    assert sorted(counters) == [1, 6]  # one bad range and the file is not trusted at all
    assert counters[1].batches_dropped == 1
    assert counters[6].evicted_seq_ranges == [(1, 2), (4, 5)]


def test_attached_sidecar_reports_a_job_that_ended_before_it_connected_as_finished(
    tmp_path: Path,
) -> None:
    """``traincheck-attach`` found the job in the registry, but it exited before its
    tracer reached the new socket: its counters file says it ended normally."""
    from traincheck.sidecar.service import Sidecar, SidecarOptions

    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(exited.stdout)
    (tmp_path / f"tracer-{pid}.json").write_text(
        json.dumps({"pid": pid, "rank": 0, "events_sent": 40, "events_dropped": 9,
                    "batches_sent": 4, "batches_dropped": 1, "evicted_seq_ranges": []})
    )  # fmt: skip
    killed = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    options = SidecarOptions(
        trace_dir=tmp_path, endpoint=f"ipc://{tmp_path}/s.sock", run_id="r", attach=True
    )
    sidecar = Sidecar(options)
    sidecar.ledger.expect(pid, 0, os.uname().nodename)
    assert sidecar.finish().status == "finished"
    sidecar = Sidecar(options)
    sidecar.ledger.expect(pid, 0, os.uname().nodename)
    sidecar.ledger.expect(int(killed.stdout), 1, os.uname().nodename)  # no counters: killed
    summary = sidecar.finish()
    assert summary.status == "killed" and summary.events_dropped == 9


def _started(pid: int, ppid: int) -> RunStart:
    return RunStart(0, 0, pid, ppid, 0, 0, 1, os.uname().nodename, ["x"], "3", "")


def _ledger_of_a_pool_job() -> IntakeLedger:
    """A job (pid 100, started by the launcher 99) with workers 101 and 102, and a
    grandchild 103 of worker 101; only the job and worker 102 said goodbye."""
    ledger = IntakeLedger()
    for pid, ppid in ((100, 99), (101, 100), (102, 100), (103, 101)):
        ledger.record_batch(_batch(0, pid, [_started(pid, ppid)]))
    for pid in (100, 102):
        ledger.record_batch(_batch(1, pid, [RunEnd(1, 1, 0, 0, "exit")]))
    return ledger


def test_the_run_is_judged_by_the_job_and_vanished_workers_are_listed_apart() -> None:
    ledger = _ledger_of_a_pool_job()
    assert ledger.ended_without_goodbye(100) == ([], [101, 103])
    # Without the launcher's word (attach), the job is the process whose parent is
    # not traced: the same verdict.
    assert ledger.ended_without_goodbye(None) == ([], [101, 103])


def test_a_job_process_without_goodbye_is_the_jobs_end() -> None:
    ledger = _ledger_of_a_pool_job()
    ledger.producers[100].run_end = False
    assert ledger.ended_without_goodbye(100) == ([100], [101, 103])
    # Launched through a shell (the launcher's pid is not traced): the traced
    # processes whose parents are not traced are the job.
    assert ledger.ended_without_goodbye(42) == ([100], [101, 103])
