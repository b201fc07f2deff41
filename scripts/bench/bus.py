"""Bus throughput: sustained events/s from the tracer's publisher to the sidecar.

Runs itself under ``traincheck-run`` as the "job" (``--produce``): the job pushes
``--events`` events through the tracer's own :class:`Publisher` (batching, msgspec
encoding, non-blocking PUSH, backlog and drop counting: the real code path) as fast
as it can, then ``RunEnd``. The real sidecar receives, validates and stores them
(crash-safe segments). Meanwhile this script polls the sidecar's peak RSS
(``VmHWM``). It prints the producer's send rate, the end-to-end rate (events over
the time from the first send until the sidecar had stored the last one, read from
the trace), events received and dropped, and the sidecar's peak RSS.

    .venv/bin/python scripts/bench/bus.py --events 2000000 --batch 4096

``--shape vars`` (default) sends what the tracer sends now: per "step" an
``ApiCall``, a ``VarStates`` of six parameters before and after, an ``ApiReturn``
(4 events on the wire, 14 records once the variable states are expanded, as the
live checker sees them). ``--shape var`` sends the older shape, one ``VarState``
per parameter and point (the figures before schema 2 were measured with it).

A rate counts as sustained only if ``dropped`` is 0 and ``received`` equals
``sent`` (plus the job's run markers): the publisher never blocks, so a sidecar that
cannot keep up shows as drops, not as a slower producer. By default the publisher
gets no backlog ring (``--backlog-bytes 0``), so any moment at which ZeroMQ's send
queue (``SEND_HWM`` batches) is full is a drop -- stricter than a traced job, whose
publisher holds up to ``BACKLOG_MAX_BYTES`` for the sidecar; pass
``--backlog-bytes 16777216`` to measure with that ring.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def produce(events: int, batch: int, backlog_bytes: int, shape: str) -> None:
    """The job side: push ``events`` realistic events through the real publisher."""
    from traincheck import environment
    from traincheck.events import (
        ApiCall,
        ApiReturn,
        ArgValue,
        RunEnd,
        RunStart,
        VarState,
        VarStates,
    )
    from traincheck.tracer.publisher import Publisher

    os.environ[environment.TRAINCHECK_DISABLE] = "1"  # no second tracer in this process
    publisher = Publisher(
        endpoint=os.environ[environment.TRAINCHECK_ENDPOINT],
        run_id=os.environ[environment.TRAINCHECK_RUN_ID],
        pid=os.getpid(),
        rank=0,
        max_events=batch,
        backlog_max_bytes=backlog_bytes,
    )
    publisher.open()
    host, python = socket.gethostname(), sys.version.split()[0]
    pid, ppid = os.getpid(), os.getppid()
    publisher.append(RunStart(time.monotonic_ns(), time.time_ns(), pid, ppid, 0, 0, 1, host, [],
                              python, "none"))  # fmt: skip
    common = {"thread": 1, "stage": "train"}
    var = {"var_name": "Net.fc.weight", "var_type": "Parameter", "shape": (256, 784)}
    var |= {"dtype": "torch.float32", "device": "cpu", "requires_grad": True}
    args = (ArgValue("lr", "float", 0.1),)
    api = "torch.optim.Optimizer.step"
    # One optimizer step's worth of events, built once: the bus is measured, not
    # the cost of creating Python objects (which the tracer pays per hook anyway).
    one_step: list[Any] = [
        ApiCall(1, 1, 0, api=api, args=args, step=0, **common),
        VarState(2, 1, "pre", grad="nonzero", digest=11, step=0, **common, **var),
        VarState(3, 1, "post", grad="nonzero", digest=12, step=0, **common, **var),
        ApiReturn(4, 1, api=api, step=0, **common),
    ]
    records = 4
    if shape == "vars":
        names = [f"Net.fc{i // 2}.{'weight' if i % 2 == 0 else 'bias'}" for i in range(6)]
        shapes = [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)]
        columns = {
            "var_names": names,
            "var_types": ["torch.nn.Parameter"] * 6,
            "shapes": shapes,
            "dtypes": ["torch.float32"] * 6,
            "devices": ["cpu"] * 6,
            "requires_grad": [True] * 6,
            "grads": ["nonzero"] * 6,
        }
        one_step[1:3] = [
            VarStates(2, 1, "pre", step=0, digests=list(range(11, 17)), **common, **columns),
            VarStates(3, 1, "post", step=0, digests=list(range(21, 27)), **common, **columns),
        ]
        records = 14
    sent = 0
    start = time.perf_counter()
    start_wall_ns = time.time_ns()
    append = publisher.append
    while sent < events:
        for event in one_step:
            append(event)
        sent += len(one_step)
    publisher.flush()
    send_s = time.perf_counter() - start
    dropped = publisher.counters.events_dropped
    publisher.append(RunEnd(time.monotonic_ns(), sent + 1, dropped, 0, "exit"))
    counters = publisher.close()
    report = {"sent": sent, "send_s": send_s, "start_wall_ns": start_wall_ns}
    report["records"] = sent // len(one_step) * records
    report["publisher_dropped"] = counters.events_dropped
    print("BUS " + json.dumps(report), flush=True)


def sidecar_peak_rss(launcher: subprocess.Popen[bytes], peak: list[int]) -> None:
    """Poll the sidecar's VmHWM (the kernel's own peak RSS) until the launcher exits."""
    import psutil

    parent = psutil.Process(launcher.pid)
    while launcher.poll() is None:
        for child in parent.children():
            try:
                if "traincheck.sidecar" in " ".join(child.cmdline()):
                    status = Path(f"/proc/{child.pid}/status").read_text()
                    line = next(x for x in status.splitlines() if x.startswith("VmHWM"))
                    peak[0] = max(peak[0], int(line.split()[1]) * 1024)
            except (psutil.Error, OSError, StopIteration):
                pass
        time.sleep(0.05)


def last_store_wall_ns(trace: Path) -> int:
    """When the sidecar wrote its last segment (mtime of the newest segment file)."""
    return max(p.stat().st_mtime_ns for p in trace.glob("segment-*.tcs"))


def measure(events: int, batch: int, backlog_bytes: int, shape: str) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory(prefix="tc-bus-") as tmp:
        trace = Path(tmp) / "trace"
        job = [sys.executable, __file__, "--produce", "--events", str(events)]
        job += ["--batch", str(batch), "--backlog-bytes", str(backlog_bytes), "--shape", shape]
        command = [str(BIN / "traincheck-run"), "-o", str(trace), "--", *job]
        launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        peak = [0]
        poller = threading.Thread(target=sidecar_peak_rss, args=(launcher, peak), daemon=True)
        poller.start()
        out, err = launcher.communicate(timeout=600)
        poller.join()
        line = next((x for x in out.decode().splitlines() if x.startswith("BUS ")), None)
        if launcher.returncode != 0 or line is None or "BUS " not in out.decode():
            raise SystemExit(f"bus benchmark run failed:\n{out.decode()}\n{err.decode()}")
        report = json.loads(line[4:])
        counters = json.loads((trace / "run.json").read_text())["counters"]
        end_to_end_s = (last_store_wall_ns(trace) - report["start_wall_ns"]) / 1e9
        return {
            "sent": report["sent"],
            # Includes the run markers (RunStart/RunEnd) of the job's processes.
            "received": counters["events_received"],
            # The sidecar's count is the publisher's own (carried in its batches and
            # RunEnd): the larger of the two, not their sum, which counted drops twice.
            "dropped": max(counters["events_dropped"], report["publisher_dropped"]),
            "rejected": counters["rejected"],
            "send_rate": report["sent"] / report["send_s"],
            "end_to_end_rate": report["sent"] / end_to_end_s,
            "records_rate": report["records"] / end_to_end_s,
            "sidecar_peak_rss_mib": peak[0] / 2**20,
            "trace_mib": sum(p.stat().st_size for p in trace.rglob("*") if p.is_file()) / 2**20,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=4096, help="events per batch")
    parser.add_argument(
        "--backlog-bytes",
        type=int,
        default=0,
        help="the publisher's backlog ring (0: none, every full send queue is a drop)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--shape",
        choices=("vars", "var"),
        default="vars",
        help="vars: one VarStates per point (the tracer now); var: one VarState per parameter",
    )
    parser.add_argument("--produce", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce:
        produce(args.events, args.batch, args.backlog_bytes, args.shape)
        return
    for round_ in range(args.rounds):
        result = measure(args.events, args.batch, args.backlog_bytes, args.shape)
        print(
            f"round {round_}: sent {result['sent']:,} received {result['received']:,} "
            f"dropped {result['dropped']:,} rejected {result['rejected']} | "
            f"send {result['send_rate'] / 1e6:.2f} M ev/s, "
            f"end-to-end {result['end_to_end_rate'] / 1e6:.2f} M ev/s"
            f" ({result['records_rate'] / 1e6:.2f} M records/s) | sidecar peak RSS "
            f"{result['sidecar_peak_rss_mib']:.0f} MiB | trace {result['trace_mib']:.0f} MiB",
            flush=True,
        )


if __name__ == "__main__":
    main()
