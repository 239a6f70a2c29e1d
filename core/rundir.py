"""Output folders: refuse to overwrite results unless asked, record the resolved config, log to ``out.log``.

Every script writes into one output folder. :func:`check_output_dir` refuses a folder that already holds results
(unless ``overwrite``), and never deletes anything: with ``overwrite`` the files a run writes replace their
namesakes one by one. Training scripts resume instead (they look for checkpoints first), so they call
:func:`open_run_dir` without the refusal.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator

from core.errors import UserError

#: where a run folder's TensorBoard event files go
TENSORBOARD_DIR = "tensorboard"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Write a file under a temporary name and give it its final name only once it is complete.

    ``with atomic_output(path) as tmp:`` yields ``.<name>.<pid>.partial`` beside ``path`` to write to; on success it
    is renamed to ``path`` (an atomic replace), on an error (a full disk, Ctrl-C) it is removed. A kill leaves at
    most ``*.partial``, never a half-written file under the final name that a re-run could take as done; the
    re-run removes the ``*.partial`` of ``path`` left by processes that no longer run. The process id keeps two
    processes that write the same file at once (two benchmark shards rendering one piece) off each other's
    temporary file: the last complete one wins.
    """
    path = Path(path)
    _remove_stale_partials(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


#: per folder written into by this process: the ``*.partial`` found there at the first write, by target name
_PARTIALS_BY_FOLDER: dict[str, dict[str, list[tuple[Path, int]]]] = {}


def _remove_stale_partials(path: Path) -> None:
    """Delete the ``.<name>.<pid>.partial`` of ``path`` whose process is gone (killed while writing).

    A folder is listed once per process, at the first write into it, not at every write: listing a folder of
    n files at each of n writes would be quadratic. A partial left there later, by a process killed after that
    first write, is removed by the next run.
    """
    folder = os.path.abspath(path.parent)
    if folder not in _PARTIALS_BY_FOLDER:
        found: dict[str, list[tuple[Path, int]]] = {}
        for partial in path.parent.glob(".*.partial"):
            name, _, pid = partial.name[1:-len(".partial")].rpartition(".")
            if pid.isdigit():
                found.setdefault(name, []).append((partial, int(pid)))
        _PARTIALS_BY_FOLDER[folder] = found
    for stale, pid in _PARTIALS_BY_FOLDER[folder].pop(path.name, ()):
        if not _process_running(pid):
            stale.unlink(missing_ok=True)


def _process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def check_output_dir(output: str | os.PathLike, overwrite: bool, result_patterns: Iterable[str] = ("*",)) -> Path:
    """Make sure ``output`` can receive results; create it.

    Args:
        output: the output folder.
        overwrite: allow writing over existing results (nothing is deleted).
        result_patterns: glob patterns (searched recursively) of the files that count as earlier results.
    Raises:
        UserError: ``output`` is a file, or it holds results and ``overwrite`` is off.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise UserError(f"output {output} is a file, not a folder; choose another --output")
    if output.is_dir() and not overwrite:
        existing = sorted(p for pattern in result_patterns for p in output.rglob(pattern) if p.is_file())
        if existing:
            raise UserError(f"output {output} already holds results ({existing[0]}, {len(existing)} files); "
                            "pass --overwrite to write over them or choose another --output")
    output.mkdir(parents=True, exist_ok=True)
    return output


def settings_changes(before: dict, after: dict) -> list[str]:
    """``"key old -> new"`` for every key of ``after`` whose value differs from ``before``'s (absent: None)."""
    return [f"{key} {before.get(key)!r} -> {value!r}" for key, value in after.items() if before.get(key) != value]


def check_run_settings(path: str | os.PathLike, settings: dict, remedy: str = "give another --output or the "
                       "same settings") -> None:
    """Record the settings a folder's results were made with in the JSON file ``path``, or check them against it.

    A benchmark that skips what is done would otherwise mix results of other settings into its table (a prior set
    re-run with other sampler flags under the same name, a render of another length). The first run writes
    ``settings`` (atomically: shards writing the same file side by side do not disturb each other); a later run
    whose ``settings`` differ from the recorded ones in any key is refused. ``settings`` must be JSON values as
    they read back (lists, not tuples).

    Raises:
        UserError: one line naming every changed key (old -> new) and the ``remedy``.
    """
    import json

    path = Path(path)
    if path.is_file():
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"{path} is not readable JSON ({err}); move it away to start afresh") from None
        changed = settings_changes(before, settings)
        if changed:
            raise UserError(f"{path.parent} holds results made with other settings ({'; '.join(changed)}); {remedy}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(settings, indent=1) + "\n")


def setup_logging(output: str | os.PathLike | None = None, name: str = "out.log", verbose: bool = False) -> logging.Logger:
    """Log to stderr and, if ``output`` is given, append to ``output/out.log``. Returns the suite's logger."""
    logger = logging.getLogger("sepsuite")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.handlers.clear()
    logger.propagate = False
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(console)
    if output is not None:
        Path(output).mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(Path(output) / name)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger
