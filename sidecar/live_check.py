"""The live check: the sidecar's checker behind a guard, and how its alerts are written.

The invariants file is parsed once per run, here (:func:`load_invariant_set`),
and the parsed set serves both the live check and the selective tracing plan
(:mod:`traincheck.sidecar.run_plan`). The checker's failures are counted and
said a few times, never fatal: a checker bug must not cost the user their trace.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traincheck.events import StoredEvent
from traincheck.records import InvariantOutcomes, RunManifest
from traincheck.tracedir import TraceDir
from traincheck.tracing_plan import TracingPlan

if TYPE_CHECKING:
    from traincheck.analysis.invariants import InvariantSet

MAX_CHECKER_ERRORS_SHOWN = 3


def emit_alert(text: str) -> None:
    """Write one alert to stderr as whole lines in a single write, so alerts from
    this process never interleave mid-line with the training job's output."""
    data = (text if text.endswith("\n") else text + "\n").encode("utf-8", "replace")
    while data:
        written = os.write(2, data)
        data = data[written:]


def load_invariant_set(path: Path | None) -> InvariantSet | None:
    """The invariants file, parsed and validated (raises ``InvariantsFileError``).

    None without a file, or, said once, when the analysis package cannot be
    imported: the sidecar then stores only, and the trace can be checked offline."""
    if path is None:
        return None
    try:
        from traincheck.analysis.invariants_file import load_invariants
    except ImportError as exc:
        emit_alert(f"traincheck sidecar: warning: live checking unavailable ({exc})")
        return None
    return load_invariants(path)


class LiveCheck:
    """The checker behind a guard: its failures are counted, never fatal.

    Without invariants there is nothing to check and ``feed`` is a no-op; the
    checker modules are imported only when there are. ``plan`` is what the run
    was traced with: invariants needing what it left out are reported
    uncheckable rather than violated (None: judge every invariant). With a
    ``trace``, results go to its live results folder."""

    def __init__(
        self,
        invariants: InvariantSet | None,
        trace: TraceDir | None = None,
        plan: TracingPlan | None = None,
        *,
        verbose: bool = False,
        joined_mid_run: bool = False,
    ) -> None:
        self.violations = 0
        self.errors = 0
        self.outcomes: InvariantOutcomes | None = None
        """After ``finish``: outcome counts and the invariants never triggered."""
        self._checker: Any = None
        self._reporter: Any = None
        if invariants is None:
            return
        from traincheck.analysis.alert_sink import LiveReporter
        from traincheck.analysis.checker import Checker
        from traincheck.analysis.instrumentation import uncheckable_invariants

        self._checker = Checker(
            invariants,
            uncheckable=uncheckable_invariants(invariants, plan) if plan is not None else None,
            joined_mid_run=joined_mid_run,
        )
        # Grouped, de-duplicated, root-cause-ordered alerts; result files at the end.
        self._reporter = LiveReporter(self._checker, emit_alert, trace, verbose=verbose)

    @property
    def active(self) -> bool:
        """Whether events are checked: without a checker the sidecar skips building
        a ``StoredEvent`` per event (0.14 us/event that nothing would read)."""
        return self._checker is not None

    def feed(self, stored: StoredEvent) -> None:
        if self._checker is not None:
            self._report(lambda: self._checker.feed(stored))

    def pump(self) -> None:
        """Print alerts held past ``FLUSH_AFTER_S`` although no event arrived since:
        a job that stalls or hangs right after a violation must still show it."""
        if self._reporter is not None:
            self._report(lambda: [])

    def finish(self, manifest: RunManifest | None = None) -> None:
        """End of run; ``manifest`` (what ``run.json`` will say) describes the run in
        the report."""
        if self._checker is not None:
            self._report(self._checker.finish)
            self._report(lambda: self._close_reporter(manifest))

    def _close_reporter(self, manifest: RunManifest | None) -> list[Any]:
        self.outcomes = self._reporter.close(manifest)
        return []

    def _report(self, produce: Callable[[], Any]) -> None:
        try:
            violations = produce() or []
            self.violations += len(violations)
            self._reporter.report(violations)
        except Exception as exc:
            # A checker bug must not cost the user their trace: count it, say it
            # a few times, keep receiving and storing.
            self.errors += 1
            if self.errors <= MAX_CHECKER_ERRORS_SHOWN:
                emit_alert(f"traincheck sidecar: checker error: {type(exc).__name__}: {exc}")
