"""What every TrainCheck command shares: its parser class and its exit-code policy.

Seven console scripts (``traincheck-run``, ``-collect``, ``-infer``, ``-check``,
``-onlinecheck``, ``-attach``, ``-ps``) and the sidecar run their ``main`` through
:func:`run_main` and parse with :class:`CommandParser`, so a mistake reads the
same everywhere and each exit code means one thing (:mod:`traincheck.errors`):

* a usage mistake, a :class:`~traincheck.errors.UserError`, or an ``OSError`` (a
  path that cannot be read or written: the user's to fix) is one line,
  ``PROG: error: ...``, and exit code 2;
* Ctrl-C is ``PROG: interrupted`` and 130;
* anything else is a TrainCheck bug: one line, ``PROG: internal error: ...``, and
  exit code 70; ``TRAINCHECK_DEBUG=1`` prints the traceback above the line.

Lives in the core package so both the launcher and the offline tools may use it.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from traincheck.environment import TRAINCHECK_DEBUG
from traincheck.errors import (
    EXIT_INTERNAL_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    UserError,
    one_line,
)

COMMON_EXIT_CODES: tuple[tuple[int | str, str], ...] = (
    (EXIT_USER_ERROR, "usage error, or an input that cannot be used (one line on stderr)"),
    (EXIT_INTERNAL_ERROR, f"internal error, a TrainCheck bug ({TRAINCHECK_DEBUG}=1 shows it)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)


class CommandParser(argparse.ArgumentParser):
    """argparse with TrainCheck's manners: a usage mistake is a one-line user error
    (raised, so :func:`run_main` prints it), and the help ends with the exit codes.

    ``exit_codes`` are the command's own (``(code, meaning)``); the shared ones
    (:data:`COMMON_EXIT_CODES`) follow them."""

    def __init__(
        self,
        *,
        prog: str,
        exit_codes: Sequence[tuple[int | str, str]] = (),
        epilog: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(prog=prog, epilog=exit_codes_epilog(epilog, exit_codes), **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UserError(message)


def exit_codes_epilog(epilog: str | None, exit_codes: Sequence[tuple[int | str, str]]) -> str:
    rows = [*exit_codes, *COMMON_EXIT_CODES]
    width = max(len(str(code)) for code, _ in rows)
    table = "\n".join(f"  {code!s:<{width}}  {meaning}" for code, meaning in rows)
    head = f"{epilog}\n\n" if epilog else ""
    return f"{head}Exit codes:\n{table}"


def run_main(prog: str, body: Callable[[], int]) -> int:
    """Run a command's ``body`` and turn whatever escapes it into one line and the
    documented exit code; ``body``'s own return value is the exit code otherwise."""
    try:
        return body()
    except UserError as exc:
        say(prog, f"error: {one_line(str(exc))}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        say(prog, "interrupted")
        return EXIT_INTERRUPTED
    except OSError as exc:
        _traceback_if_debugging()
        say(prog, f"error: {describe_os_error(exc)}")
        return EXIT_USER_ERROR
    except Exception as exc:
        report_internal_error(prog, exc)
        return EXIT_INTERNAL_ERROR


def report_internal_error(prog: str, exc: BaseException) -> None:
    """Say a bug in one line (with the traceback above it under ``TRAINCHECK_DEBUG=1``);
    must be called from the ``except`` block that caught ``exc``."""
    _traceback_if_debugging()
    hint = "" if _debugging() else f" (set {TRAINCHECK_DEBUG}=1 for the traceback)"
    say(prog, f"internal error: {type(exc).__name__}: {one_line(str(exc))}{hint}")


def describe_os_error(exc: OSError) -> str:
    """``PATH: reason`` when the error names a path, else its own words."""
    if exc.strerror and exc.filename is not None:
        return f"{os.fsdecode(exc.filename)}: {exc.strerror}"
    return one_line(str(exc))


def say(prog: str, message: str) -> None:
    print(f"{prog}: {message}", file=sys.stderr, flush=True)


def _debugging() -> bool:
    return os.environ.get(TRAINCHECK_DEBUG) == "1"


def _traceback_if_debugging() -> None:
    if _debugging():
        traceback.print_exc()
