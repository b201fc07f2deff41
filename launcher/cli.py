"""``traincheck-run``: run a training command with a tracing sidecar beside it.

The order of things: validate everything the user gave us; create the trace and
private run directories; start the sidecar and wait for its ready line (it parses
the invariants, decides and records the tracing plan: a malformed file ends the
run here, one line, exit 2); spawn the job with the bootstrap dir on PYTHONPATH;
forward signals while it runs; tell the sidecar to drain and wait while its live
check makes progress (Ctrl-C stops that wait); print its summary; exit with the
job's code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from traincheck.cli_scaffold import report_internal_error, run_main
from traincheck.launcher.drain_wait import collect_summary, interrupt_stops_the_wait
from traincheck.launcher.job import (
    SignalForwarder,
    exit_status,
    flush_std_streams,
    job_environment,
    spawn_job,
)
from traincheck.launcher.rundir import RunDirectory, create_run_directory, new_run_id
from traincheck.launcher.settings import PROG, RunSettings, parse_settings
from traincheck.launcher.sidecar_process import SidecarProcess, describe_exit
from traincheck.launcher.summary import (
    detached_lines,
    lost_sidecar_lines,
    read_tracer_counters,
    record_lost_sidecar,
    record_stopped_check,
    stopped_check_lines,
)
from traincheck.launcher.tracing_options import record_plan
from traincheck.run_summary import summary_lines
from traincheck.terminal_text import printable
from traincheck.tracedir import TraceDir
from traincheck.tracing_plan import TracingPlan

JOB_POLL_S = 0.5
"""How often the launcher looks up from waiting on the job to check the sidecar."""

STOP_POLL_S = 0.1
"""With --on-violation stop, how often it looks for the sidecar's first-violation file."""


def say(message: str) -> None:
    """One line on stderr, made printable (it may quote names from files and processes)."""
    print(printable(f"{PROG}: {message}"), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point; every failure becomes one line on stderr and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    return run_main(PROG, lambda: run(parse_settings(args)))


def run(settings: RunSettings) -> int:
    """One traced run, start to finish; returns the exit code."""
    trace = TraceDir(settings.output_dir)
    created_output = not trace.root.exists()
    trace.root.mkdir(parents=True, exist_ok=True)
    with removed_on_failure(trace, created_output):
        run_dir = create_run_directory(new_run_id())
    sidecar: SidecarProcess | None = None
    try:
        with removed_on_failure(trace, created_output):
            plan_file = write_tracer_plan(settings, run_dir)
            if settings.detached:
                record_plan(settings.tracing_plan, trace)  # no sidecar to do it
            else:
                sidecar = start_sidecar(settings, run_dir, plan_file)
        returncode = run_job(settings, run_dir, sidecar, plan_file)
        if sidecar is None:
            return after_job(returncode, lambda: finish_detached(settings, returncode))
        running = sidecar
        return after_job(returncode, lambda: finish(settings, running, returncode))
    finally:
        if sidecar is not None:
            sidecar.kill()
        run_dir.remove()


def write_tracer_plan(settings: RunSettings, run_dir: RunDirectory) -> Path | None:
    """The plan file the tracer will read, if its flags ask for anything beyond the
    defaults or the sidecar is to narrow it (``--selective``)."""
    if settings.tracing_plan is None and not settings.selective:
        return None
    return run_dir.write_plan(settings.tracing_plan or TracingPlan())


def start_sidecar(
    settings: RunSettings, run_dir: RunDirectory, plan_file: Path | None
) -> SidecarProcess:
    """Start the sidecar; it parses the invariants, decides and records the plan."""
    return SidecarProcess.start(
        trace_dir=settings.output_dir,
        endpoint=run_dir.endpoint,
        run_id=run_dir.run_id,
        invariants=settings.invariants,
        command_file=run_dir.write_command(settings.command),
        plan_file=plan_file,
        selective=settings.selective,
        verbose=settings.verbose,
        timeout_s=settings.sidecar_timeout_s,
    )


@contextlib.contextmanager
def removed_on_failure(trace: TraceDir, created: bool) -> Iterator[None]:
    """If setting the run up fails, remove the trace directory we created for it:
    nothing ran, so nothing is left behind (a user error leaves no empty folder)."""
    try:
        yield
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                trace.tracing_plan.unlink(missing_ok=True)
                trace.root.rmdir()
        raise


def run_job(
    settings: RunSettings,
    run_dir: RunDirectory,
    sidecar: SidecarProcess | None,
    plan_file: Path | None,
) -> int:
    """Spawn the job, forward signals to it, wait; return its raw return code."""
    forwarder = SignalForwarder(notify=say)
    forwarder.install()
    try:
        env = job_environment(
            os.environ,
            endpoint=run_dir.endpoint,
            run_id=run_dir.run_id,
            trace_dir=settings.output_dir,
            plan_file=plan_file,
        )
        flush_std_streams()
        job = spawn_job(settings.command, env)
        forwarder.attach(job.pid)
        if sidecar is not None:
            sidecar.tell_job(job.pid)
        stop_marker = violation_marker(settings) if settings.on_violation == "stop" else None
        returncode = wait_for_job(job, sidecar, stop_marker)
        # A job we SIGKILLed on the user's second Ctrl-C was interrupted, not crashed:
        # report it like Ctrl-C (130), as a shell would.
        return -signal.SIGINT if forwarder.killed_on_interrupt else returncode
    finally:
        forwarder.uninstall()


def after_job(returncode: int, report: Callable[[], int]) -> int:
    """``report``'s exit code; should reporting fail (a bug), the job's own code is
    still ours: the job ran, and its code is what scripts around us act on."""
    try:
        return report()
    except Exception as exc:
        report_internal_error(PROG, exc)
        return exit_status(returncode)


def violation_marker(settings: RunSettings) -> Path:
    """The file the sidecar writes at the first live violation (for --on-violation stop)."""
    return TraceDir(settings.output_dir).first_violation_marker


def wait_for_job(
    job: subprocess.Popen[bytes],
    sidecar: SidecarProcess | None,
    stop_marker: Path | None = None,
) -> int:
    """Wait for the job; say so at once if the sidecar dies meanwhile (the job goes on).

    With ``stop_marker``, interrupt the job (SIGINT to its process group, like
    Ctrl-C) once the sidecar has written that file, i.e. at the first violation.
    """
    warned = False
    stopped = False
    while True:
        try:
            return job.wait(timeout=STOP_POLL_S if stop_marker else JOB_POLL_S)
        except subprocess.TimeoutExpired:
            if stop_marker is not None and not stopped and stop_marker.exists():
                stopped = True
                say("invariant violated; stopping the job (--on-violation stop)")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(job.pid, signal.SIGINT)
            code = sidecar.exit_code() if sidecar is not None else None
            if code is not None and not warned:
                warned = True
                say(
                    f"warning: sidecar exited unexpectedly ({describe_exit(code)}); "
                    "the job continues, its events are no longer recorded"
                )


def finish_detached(settings: RunSettings, returncode: int) -> int:
    """A detached run: no summary of our own; say what the tracers counted."""
    for line in detached_lines(read_tracer_counters(settings.output_dir), settings.output_dir):
        say(line)
    return exit_status(returncode)


def finish(settings: RunSettings, sidecar: SidecarProcess, returncode: int) -> int:
    """Drain the sidecar, report, and turn the job's return code into ours."""
    with interrupt_stops_the_wait() as wait:
        summary, lost_reason = collect_summary(sidecar, settings.sidecar_timeout_s, wait, say)
        if summary is not None:
            lines = summary_lines(summary, settings.output_dir)
        else:
            lines = lines_without_summary(settings, lost_reason)
        for line in lines:
            say(line)
    status = exit_status(returncode)
    violations = summary.violations if summary else 0
    if settings.fail_on_violation and status == 0 and violations > 0:
        return 1
    return status


def lines_without_summary(settings: RunSettings, reason: str) -> list[str]:
    """Mark ``run.json`` and say what is left: a complete trace whose live check did
    not finish, or a trace that stops early."""
    counters = record_stopped_check(settings.output_dir, reason)
    if counters is not None:
        return stopped_check_lines(reason, counters, settings.output_dir, settings.invariants)
    tracer_counters = read_tracer_counters(settings.output_dir)
    record_lost_sidecar(settings.output_dir, reason, tracer_counters)
    return lost_sidecar_lines(reason, tracer_counters, settings.output_dir)


if __name__ == "__main__":
    sys.exit(main())
