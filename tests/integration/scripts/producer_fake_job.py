"""A stand-in for a traced training job: PUSHes real encoded batches, no torch.

It reads the TRAINCHECK_* variables the launcher sets, sends ``RunStart``, one
batch per fake optimizer step (ApiCall, VarState pre/post, ApiReturn, MetaChange)
and ``RunEnd``, like the real tracer would, with non-blocking sends and counted
drops, and writes ``TRACE_DIR/tracer-<pid>.json`` at exit. Options let tests make
it wait, misbehave, or exit with a given code.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import zmq

from traincheck import environment
from traincheck.events import (
    SCHEMA_VERSION,
    ApiCall,
    ApiReturn,
    ArgValue,
    Batch,
    Event,
    MetaChange,
    RunEnd,
    RunStart,
    VarState,
)
from traincheck.wire import encode_batch


class FakeTracer:
    """Just enough of the tracer's publisher: batches, sequence numbers, drops."""

    def __init__(self) -> None:
        self.endpoint = os.environ[environment.TRAINCHECK_ENDPOINT]
        self.run_id = os.environ[environment.TRAINCHECK_RUN_ID]
        self.trace_dir = Path(os.environ[environment.TRAINCHECK_TRACE_DIR])
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.SNDHWM, 1000)
        self.socket.connect(self.endpoint)
        self.seq = 0
        self.events_sent = 0
        self.events_dropped = 0
        self.batches_sent = 0
        self.batches_dropped = 0

    def send(self, events: list[Event]) -> None:
        batch = Batch(
            SCHEMA_VERSION, self.run_id, os.getpid(), 0, self.seq, self.events_dropped, events
        )
        self.seq += 1
        try:
            self.socket.send(encode_batch(batch), zmq.NOBLOCK)
        except zmq.Again:
            self.events_dropped += len(events)
            self.batches_dropped += 1
            return
        self.events_sent += len(events)
        self.batches_sent += 1

    def send_raw(self, payload: bytes) -> None:
        self.socket.send(payload, zmq.NOBLOCK)

    def close(self) -> None:
        counters = {
            "pid": os.getpid(),
            "rank": 0,
            "events_sent": self.events_sent,
            "events_dropped": self.events_dropped,
            "batches_sent": self.batches_sent,
            "batches_dropped": self.batches_dropped,
        }
        (self.trace_dir / f"tracer-{os.getpid()}.json").write_text(json.dumps(counters))
        self.socket.close(linger=1000)
        self.context.term()


def run_start() -> RunStart:
    return RunStart(
        ts_ns=time.monotonic_ns(),
        wall_ns=time.time_ns(),
        pid=os.getpid(),
        ppid=os.getppid(),
        rank=0,
        local_rank=0,
        world_size=1,
        host=socket.gethostname(),
        argv=sys.argv,
        python=sys.version.split()[0],
        torch_version="none",
    )


def step_events(step: int) -> list[Event]:
    now = time.monotonic_ns
    call_id = step + 1
    common = {"thread": 1, "step": step, "stage": "train"}
    var = {"var_name": "Net.fc.weight", "var_type": "Parameter", "shape": (2, 3)}
    var |= {"dtype": "torch.float32", "device": "cpu", "requires_grad": True}
    args = (ArgValue("optimizer", "optimizer", "SGD"), ArgValue("lr", "float", 0.1))
    return [
        ApiCall(now(), call_id, 0, api="torch.optim.Optimizer.step", args=args, **common),
        VarState(now(), call_id, "pre", grad="nonzero", digest=step, **common, **var),
        VarState(now(), call_id, "post", grad="nonzero", digest=step + 1, **common, **var),
        ApiReturn(now(), call_id, api="torch.optim.Optimizer.step", **common),
        MetaChange(now(), 1, "step", step + 1, step + 1, "train"),
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--junk", type=int, default=0, help="malformed messages to send first")
    parser.add_argument("--wait-signal", action="store_true", help="sleep until signalled")
    parser.add_argument("--wait-file", help="after the steps, wait until this file exists")
    parser.add_argument("--after-wait-steps", type=int, default=0)
    parser.add_argument("--no-run-end", action="store_true", help="hang before RunEnd")
    parser.add_argument(
        "--on-sigint",
        choices=["default", "report", "ignore"],
        default="default",
        help="report: print each SIGINT, die of it 0.5 s after the first; ignore: print only",
    )
    return parser.parse_args()


def wait_for_file(path: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


SIGINTS: list[float] = []


def report_sigint(_signum: int, _frame: object) -> None:
    """Print one line per SIGINT so tests can count deliveries."""
    print("fake job got SIGINT", flush=True)
    SIGINTS.append(time.monotonic())


def die_of_sigint_later() -> None:
    """Wait for a SIGINT, give duplicates 0.5 s to show up, then die of SIGINT."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (SIGINTS and time.monotonic() - SIGINTS[0] > 0.5):
        time.sleep(0.02)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


def main() -> int:
    args = parse_args()
    if args.on_sigint != "default":
        signal.signal(signal.SIGINT, report_sigint)
    tracer = FakeTracer()
    print(f"fake job pid={os.getpid()}", flush=True)
    try:
        for _ in range(args.junk):
            tracer.send_raw(b"\x93not a batch")
        tracer.send([run_start()])
        for step in range(args.steps):
            tracer.send(step_events(step))
            print(f"fake job step {step}", flush=True)
        if args.wait_file:
            print("fake job waiting for file", flush=True)
            wait_for_file(args.wait_file)
            for step in range(args.steps, args.steps + args.after_wait_steps):
                tracer.send(step_events(step))
                print(f"fake job step {step}", flush=True)
        if args.wait_signal or args.no_run_end:
            print("fake job waiting for signal", flush=True)
            if args.on_sigint == "report":
                die_of_sigint_later()
            else:
                time.sleep(60)
        tracer.send(
            [RunEnd(time.monotonic_ns(), tracer.events_sent, tracer.events_dropped, 0, "exit")]
        )
    finally:
        tracer.close()
    print("fake job done", flush=True)
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())
