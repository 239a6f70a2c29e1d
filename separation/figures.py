"""Figures of a separation: box plots of the framewise scores, and ground truth vs estimate spectrograms.

Each writes a PNG and return its path; matplotlib runs headless (Agg backend).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from core.spectral import SpectrogramParams
from separation.evaluation import Scores


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def specshow_db(axis, mel_db: np.ndarray, params: SpectrogramParams = SpectrogramParams(), x_coords=None):
    """Draw one (n_mels, n_frames) dB mel spectrogram on ``axis``: time axis, mel-spaced Hz axis, the suite's
    fixed colour range [db_min, db_max]. Returns the image (for a colour bar)."""
    import librosa.display

    return librosa.display.specshow(mel_db, x_coords=x_coords, x_axis="time", y_axis="mel",
                                    sr=params.sample_rate, hop_length=params.hop_length, fmin=params.fmin,
                                    fmax=params.fmax, ax=axis, vmin=params.db_min, vmax=params.db_max, cmap="magma")


#: scores above this many dB are BSS Eval artefacts rather than quality (a scaled copy of the mixture has a SAR of
#: about 200 dB): figures draw them as a capped marker with the value written, tables as "> 60"
SCORE_CAP_DB = 60.0


def plot_score_boxes(scores_by_method: Mapping[str, Scores], path: str | os.PathLike,
                     metrics: Sequence[str] = ("SDR", "SIR", "SAR"), title: Optional[str] = None,
                     cap: float = SCORE_CAP_DB) -> Path:
    """Box plots of framewise scores: one panel per metric, methods side by side, one box per source.

    Args:
        scores_by_method: {method name: Scores}, in the order to draw (put inversion methods first and oracles
            after them to read the gap between the two); NaN frames are left out.
        path: PNG to write.
        cap: dB; a box whose median is above it is drawn as a marker at the cap with its median written, and
            single frames above it sit at the cap, so that such values do not stretch the axis.
    Returns:
        the PNG's path.
    """
    plt = pyplot()
    methods = list(scores_by_method)
    targets = []
    for scores in scores_by_method.values():
        targets += [t for t in scores.targets if t not in targets]
    figure_width = min(16.0, max(6.0, 0.5 * len(methods) * max(1, len(targets)) + 2.0))
    fig, axes = plt.subplots(len(metrics), 1, figsize=(figure_width, 2.8 * len(metrics) + 0.8), squeeze=False)
    capped = False
    for axis, metric in zip(axes[:, 0], metrics):
        capped |= draw_score_boxes(axis, scores_by_method, metric, targets, cap)
    axes[0, 0].legend(loc="best", fontsize=8)
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    if capped:
        fig.text(0.005, 0.003, f"triangle: median above {cap:g} dB (value written)", fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def draw_score_boxes(axis, scores_by_method: Mapping[str, Scores], metric: str, targets: Sequence[str],
                     cap: float = SCORE_CAP_DB) -> bool:
    """One panel of :func:`plot_score_boxes`: a box per (method, source) of ``metric``'s frames on ``axis``; a box
    whose median is above ``cap`` dB becomes a triangle at the cap with the median written, frames above it sit at
    the cap. Returns whether anything was capped."""
    import matplotlib.pyplot as plt

    methods = list(scores_by_method)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.8 / max(1, len(targets))
    capped = False
    for t_index, target in enumerate(targets):
        colour = colours[t_index % len(colours)]
        data, positions = [], []
        for m_index, method in enumerate(methods):
            scores = scores_by_method[method]
            if target not in scores.targets:
                continue
            frames = scores.values[metric][scores.targets.index(target)]
            frames = frames[np.isfinite(frames)]
            position = m_index + (t_index - (len(targets) - 1) / 2) * width
            if frames.size and np.median(frames) > cap:
                axis.plot(position, cap, "^", color=colour, markersize=7)
                axis.annotate(f"{np.median(frames):.0f}", (position, cap), xytext=(0, -12),
                              textcoords="offset points", ha="center", fontsize=7)
                capped = True
                continue
            data.append(np.minimum(frames, cap) if frames.size else np.array([np.nan]))
            positions.append(position)
        axis.plot([], [], "s", color=colour, label=target)
        if not data:
            continue
        boxes = axis.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True,
                             showfliers=True, flierprops={"markersize": 2})
        for patch in boxes["boxes"]:
            patch.set_facecolor(colour)
            patch.set_alpha(0.7)
    axis.set_xticks(range(len(methods)))
    axis.set_xticklabels(methods, rotation=20, ha="right", fontsize=8)
    axis.set_ylabel(f"{metric} (dB)")
    axis.grid(axis="y", alpha=0.3)
    axis.set_xlim(-0.6, len(methods) - 0.4)
    return capped


def plot_spectrogram_comparison(references_db: Mapping[str, np.ndarray], estimates_db: Mapping[str, np.ndarray],
                                path: str | os.PathLike, params: SpectrogramParams = SpectrogramParams(),
                                max_segments: int = 5, title: Optional[str] = None,
                                mixture_db: Optional[np.ndarray] = None) -> Path:
    """Ground truth next to estimate for every source, mel spectrograms in dB on a Hz axis (the mixture first,
    when given).

    Args:
        references_db, estimates_db: {source: (n_segments, n_mels, n_frames) dB}; the first ``max_segments``
            segments are drawn one after the other, each frame at its true time.
        path: PNG to write.
        mixture_db: (n_segments, n_mels, n_frames) dB, drawn in a first row.
    Returns:
        the PNG's path.
    """
    plt = pyplot()
    names = list(estimates_db)
    rows = ([("mixture", (("", mixture_db), ("", None)))] if mixture_db is not None else []) + [
        (name, (("ground truth", references_db.get(name)), ("estimate", estimates_db[name]))) for name in names]
    fig, axes = plt.subplots(len(rows), 2, figsize=(12, 2.6 * len(rows) + 0.6), squeeze=False,
                             sharex=True, sharey=True)
    image = None
    for row, (name, panels) in enumerate(rows):
        for col, (label, source) in enumerate(panels):
            axis = axes[row, col]
            if source is None:
                axis.set_axis_off()
                continue
            segments = np.asarray(source)[:max_segments]
            n_segments, _, n_frames = segments.shape
            frames = np.concatenate(list(segments), axis=-1)
            times = (np.arange(n_segments)[:, None] * params.segment_samples
                     + np.arange(n_frames)[None, :] * params.hop_length).reshape(-1) / params.sample_rate
            image = specshow_db(axis, frames, params, x_coords=times)
            axis.set_title(f"{name}: {label}" if label else name, fontsize=9)
            if col == 1 or row < len(rows) - 1:
                axis.set_ylabel("")
            if row < len(rows) - 1:
                axis.set_xlabel("")
    if image is not None:
        fig.colorbar(image, ax=axes, format="%+.0f dB", fraction=0.025)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_image_separation(mixtures: np.ndarray, estimates: np.ndarray, references: np.ndarray,
                          path: str | os.PathLike, max_pairs: int = 8, title: Optional[str] = None) -> Path:
    """A grid for toy image separations: one column per pair; rows mixture, estimate 1, truth 1, estimate 2,
    truth 2.

    Args:
        mixtures: (n, h, w, c) in [0, 1]; estimates, references: (2, n, h, w, c) in [0, 1].
    """
    plt = pyplot()
    n = min(max_pairs, mixtures.shape[0])
    rows = [("mixture", mixtures), ("estimate 1", estimates[0]), ("truth 1", references[0]),
            ("estimate 2", estimates[1]), ("truth 2", references[1])]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n + 0.8, 1.3 * len(rows)), squeeze=False)
    for row, (label, images) in enumerate(rows):
        for col in range(n):
            axis = axes[row, col]
            image = np.clip(np.asarray(images[col]), 0.0, 1.0)
            axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0.0, vmax=1.0)
            axis.set_xticks([])
            axis.set_yticks([])
            if col == 0:
                axis.set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
