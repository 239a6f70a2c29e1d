"""User-facing errors: bad input becomes one line on stderr and a non-zero exit, never a traceback.

Library code raises :class:`UserError` for anything the user can fix (a missing path, a file that is not
audio, a config key that does not exist, ...). Scripts wrap their ``main`` with :func:`run_main`, which prints
``error: <message>`` and exits with status 2 (bad input) or 130 (interrupted by Ctrl-C).
"""
from __future__ import annotations

import errno
import logging
import sys
import warnings
from typing import Callable, NoReturn


class UserError(Exception):
    """An error caused by the user's input; its message is one line that says what is wrong and how to fix it."""


def _to_run_log(level: int, line: str) -> None:
    """Also write ``line`` into the run folder's ``out.log`` when the script opened one (``core.rundir.setup_logging``
    gives the suite's logger a file handler), so that a run folder says why a run stopped."""
    logger = logging.getLogger("sepsuite")
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(logger.makeRecord(logger.name, level, __file__, 0, line, None, None))


def warn(message: str) -> None:
    """Print a one-line warning on stderr (for input that can still be used, e.g. a resampled file), and into the
    run's out.log."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
    _to_run_log(logging.WARNING, f"warning: {message}")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr (and into the run's out.log) and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    _to_run_log(logging.ERROR, f"error: {message}")
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
    except OSError as err:  # the machine, not the code: a full disk, a folder without write permission, ...
        fail(describe_os_error(err))
    raise SystemExit(code or 0)


def describe_os_error(err: OSError) -> str:
    """One line for an operating-system error met while reading or writing, saying what to do."""
    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT) or ("requested and" in str(err) and "written" in str(err)):
        return (f"the disk is full{where}: free some space or write to another disk, then run again (the files "
                "already finished are kept; no half-written file is left)")
    return f"{err.strerror or str(err).splitlines()[0]}{where}"
