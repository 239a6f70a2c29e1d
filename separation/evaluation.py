"""BSS Eval v4 scores of separated sources: scoring a separation, and finding and collecting its score files.

Everything goes through the suite's BSS Eval library :mod:`separation.bss_eval`: the metrics (``evaluate``,
museval's API and return order SDR, ISR, SIR, SAR, each ``(n_sources, n_frames)`` dB; docs/algorithms.md §6;
:func:`_bss_eval_v4` is the only call), the one score class (:class:`~separation.bss_eval.Scores`:
``metrics.json`` in museval's layout, NaN written as ``NaN``, and ``metrics.csv``, one row per target, metric and
frame) and the field's summary (median over the frames that are not NaN).
Frames where a reference or an estimate is silent are NaN. A source whose reference or estimate is silent over
the whole song (which BSS Eval cannot score) is left out of the evaluation of the others, with a warning, and
gets NaN in every frame.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from core.errors import UserError, warn
from separation import bss_eval
from separation.bss_eval import CSV_NAME, JSON_NAME, METRICS, Scores  # noqa: F401  (the suite's score API)

#: what a folder of scored audio holds (a script refuses to write over them without --overwrite)
SCORED_AUDIO_PATTERNS = ("*.wav", JSON_NAME, CSV_NAME, "*.png")


def _bss_eval_v4(references: np.ndarray, estimates: np.ndarray, window: int, hop: int) -> dict[str, np.ndarray]:
    """The one call into :func:`separation.bss_eval.evaluate` (museval's signature and return order).

    Args:
        references, estimates: (n_sources, n_samples) float64, no source silent throughout.
        window, hop: framing of the framewise metrics, in samples.
    Returns:
        {metric: (n_sources, n_frames) float64} for SDR, ISR, SIR, SAR.
    """
    scored = bss_eval.evaluate(references[..., None], estimates[..., None], win=window, hop=hop)
    return {name: np.asarray(value, dtype=np.float64).reshape(references.shape[0], -1)
            for name, value in zip(METRICS, scored)}


def write_csv(path: str | os.PathLike, scores_by_method: dict[str, Scores], track: str = "track") -> Path:
    """One CSV of framewise scores of several methods: :meth:`Scores.dataframe`'s columns plus a leading ``method``."""
    import pandas as pd

    frames = []
    for method, scores in scores_by_method.items():
        frame = dataclasses.replace(scores, track=track).dataframe()
        frame.insert(0, "method", method)
        frames.append(frame)
    path = Path(path)
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return path


def evaluate_sources(references: np.ndarray, estimates: np.ndarray, targets: Sequence[str],
                     sample_rate: int = 16000, window: float = 1.0, hop: float = 1.0) -> Scores:
    """Framewise BSS Eval v4 scores of every estimate against its reference.

    Args:
        references: (n_sources, n_samples) true source waveforms.
        estimates: (n_sources, n_samples) estimates, same order and length (trim before calling).
        targets: source names, one per row.
        window, hop: seconds (museval's default 1 s / 1 s).
    Returns:
        :class:`Scores`; a source whose reference or estimate is silent over the whole song gets NaN everywhere
        (with a warning) and is left out of the others' evaluation.
    Raises:
        UserError: shapes disagree.
    """
    references = np.asarray(references, dtype=np.float64)
    estimates = np.asarray(estimates, dtype=np.float64)
    if references.shape != estimates.shape or references.ndim != 2:
        raise UserError(f"references {references.shape} and estimates {estimates.shape} must both be "
                        "(n_sources, n_samples)")
    if len(targets) != references.shape[0]:
        raise UserError(f"{len(targets)} source names for {references.shape[0]} sources")
    win, step = int(round(window * sample_rate)), int(round(hop * sample_rate))
    if not (np.all(np.isfinite(references)) and np.all(np.isfinite(estimates))):
        raise UserError("references or estimates hold NaN or infinite samples")
    silent = []
    for k in range(references.shape[0]):
        for kind, audio in (("reference", references[k]), ("estimate", estimates[k])):
            if not np.any(audio) and k not in silent:
                warn(f"the {kind} of {targets[k]} is silent over the whole song: its scores are NaN")
                silent.append(k)
    active = [k for k in range(references.shape[0]) if k not in silent]
    n_frames = len(bss_eval.frame_bounds(win, step, references.shape[1]))
    values = {m: np.full((references.shape[0], n_frames), np.nan) for m in METRICS}
    if active:
        scored = _bss_eval_v4(references[active], estimates[active], win, step)
        n_frames = next(iter(scored.values())).shape[1]
        values = {m: np.full((references.shape[0], n_frames), np.nan) for m in METRICS}
        for metric, value in scored.items():
            values[metric][active] = value
    return Scores(list(targets), values, float(window), float(hop))


def find_metrics(root: str | os.PathLike, max_depth: int = 2) -> dict[str, Scores]:
    """Every ``metrics.json`` below ``root`` (at most ``max_depth`` folders down), keyed by its folder relative
    to ``root`` (e.g. ``inverse_reuse_phase_frame_wiener_filter``, ``oracles/IRM1``); unreadable files are skipped."""
    root = Path(root)
    found = {}
    for depth in range(1, max_depth + 1):
        for path in sorted(root.glob("/".join(["*"] * depth) + "/" + JSON_NAME)):
            try:
                found[path.parent.relative_to(root).as_posix()] = Scores.load(path)
            except UserError as err:
                warn(f"skipped {path}: {err}")
    return found
