"""User-facing errors: bad input becomes one line on stderr and a non-zero exit, never a traceback.

Library code raises :class:`UserError` for anything the user can fix (a missing path, a file that is not
audio, a config key that does not exist, ...). Scripts wrap their ``main`` with :func:`run_main`, which prints
``error: <message>`` and exits with status 2 (bad input) or 130 (interrupted by Ctrl-C).
"""
from __future__ import annotations

import sys
import warnings
from typing import Callable, NoReturn


class UserError(Exception):
    """An error caused by the user's input; its message is one line that says what is wrong and how to fix it."""


def warn(message: str) -> None:
    """Print a one-line warning on stderr (for input that can still be used, e.g. a resampled file)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def run_main(main: Callable[[], int | None]) -> NoReturn:
    """Run a script's ``main`` and turn :class:`UserError` and Ctrl-C into one-line messages.

    Args:
        main: the script's entry point; it may return an exit code (``None`` means 0).
    """
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        code = main()
    except UserError as err:
        fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    raise SystemExit(code or 0)
