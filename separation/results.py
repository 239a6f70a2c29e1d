"""BASIS results files (``results.npz``, ``results_convergence.npz``): writing them, reading and checking them, and
turning every spectrogram into audio. The one module that knows their layout.

Layout (the seed's, plus optional keys the suite adds)::

    x1, x2, ...      estimated mel spectrograms of each source, (n_segments, n_mels, n_frames)
    gt1, gt2, ...    ground-truth mel spectrograms, same shape (absent when the song had no source wavs)
    mixed            the mixture's mel spectrograms, same shape
    stft_mixture     optional, (n_segments, n_freqs, n_frames) complex STFT of each mixture segment
    sources          optional, the source names (["piano", "violin"]), one per x<i>
    n_samples        optional, the song's true length in samples

Spectrograms are dB (clipped to [-100, 20]) or, with ``scale="power"``, mel power. Files written by the seed's own
``run_basis_sep.py`` differ in three ways that are handled here: the arrays may carry a trailing channel axis
``(n_segments, 96, 64, 1)``; the estimates and the mixture are stored in the model's [0, 1] scale (the ground truth
in dB), which is recognised (every value within [-0.5, 1.5], impossible for a dB spectrogram of audio) and mapped
back with a warning; and there is no ``stft_mixture``, no ``sources`` and no ``n_samples``. (With ``scale="power"``
a [0, 1]-scaled array cannot be told from a quiet power spectrogram, so power values are taken as they are.)
"""
from __future__ import annotations

import dataclasses
import os
import re
import time
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from core.errors import UserError, warn
from core.rundir import atomic_output
from core.spectral import SpectrogramParams, power_to_db
from datasets.preprocessing import from_unit
from separation import inversion

#: a dB spectrogram of audio never has every value within this range; the seed's [0,1]-scaled output always has
UNIT_RANGE = (-0.5, 1.5)
#: the file names of a separation's results in its output folder
RESULTS_NAME = "results.npz"
CONVERGENCE_NAME = "results_convergence.npz"


def save_results(folder: str | os.PathLike, estimates: list[np.ndarray], mixture: np.ndarray,
                 ground_truth: Optional[list[np.ndarray]] = None, names: Optional[list[str]] = None,
                 stft_mixture: Optional[np.ndarray] = None, n_samples: Optional[int] = None, **extra) -> Path:
    """Write ``folder/results.npz`` in the layout above (x1, x2, ...; gt1, gt2, ... when given; mixed; and the
    optional keys when given; ``extra`` arrays as they are, e.g. the toy separation's ``psnr``).

    Args:
        estimates: one (n_segments, n_mels, n_frames) array per source (images: (N, h, w, c)).
        mixture: the mixture's spectrograms (or images), same shape.
        ground_truth: the true sources, same shapes, or None.
    Returns:
        the path written.
    """
    arrays = {f"x{k + 1}": np.asarray(x) for k, x in enumerate(estimates)}
    if ground_truth is not None:
        arrays.update({f"gt{k + 1}": np.asarray(g) for k, g in enumerate(ground_truth)})
    arrays["mixed"] = np.asarray(mixture)
    if stft_mixture is not None:
        arrays["stft_mixture"] = stft_mixture
    if names is not None:
        arrays["sources"] = np.array(list(names))
    if n_samples is not None:
        arrays["n_samples"] = np.array(n_samples)
    path = Path(folder) / RESULTS_NAME
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:  # a killed run leaves no half-written results
        np.savez(handle, **arrays, **extra)
    return path


def save_convergence(folder: str | os.PathLike, sigmas: np.ndarray, history: list[np.ndarray],
                     names: Optional[list[str]] = None) -> Path:
    """Write ``folder/results_convergence.npz``: ``sigmas`` (L,) and x1, x2, ... the estimates after each of the
    L levels, (L, n_segments, n_mels, n_frames) per source, and ``sources`` when given."""
    arrays = {f"x{k + 1}": np.asarray(x) for k, x in enumerate(history)}
    if names is not None:
        arrays["sources"] = np.array(list(names))
    path = Path(folder) / CONVERGENCE_NAME
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, sigmas=np.asarray(sigmas, np.float32), **arrays)
    return path


@dataclasses.dataclass
class BasisResults:
    """A checked results.npz, every spectrogram in dB.

    Attributes:
        estimates: (n_sources, n_segments, n_mels, n_frames) float32 dB.
        ground_truth: (n_sources, n_segments, n_mels, n_frames) float32 dB, or None (no source wavs).
        mixture: (n_segments, n_mels, n_frames) float32 dB.
        stft_mixture: (n_segments, n_freqs, n_frames) complex64, or None.
        sources: the stored source names, or None.
        n_samples: the stored true length in samples, or None.
    """

    path: Path
    estimates: np.ndarray
    ground_truth: Optional[np.ndarray]
    mixture: np.ndarray
    stft_mixture: Optional[np.ndarray]
    sources: Optional[list[str]]
    n_samples: Optional[int]

    @property
    def n_sources(self) -> int:
        return self.estimates.shape[0]

    @property
    def n_segments(self) -> int:
        return self.estimates.shape[1]

    @property
    def names(self) -> list[str]:
        """The stored names, or sep1, sep2, ... (the seed's file names)."""
        return list(self.sources) if self.sources else [f"sep{i + 1}" for i in range(self.n_sources)]


def _spectrogram(data, key: str, path: Path, params: SpectrogramParams, scale: str) -> np.ndarray:
    """One stored spectrogram array as (n_segments, n_mels, n_frames) float32 dB."""
    array = np.asarray(data[key])
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != params.shape:
        raise UserError(f"{path}: {key} has shape {tuple(np.asarray(data[key]).shape)}, expected "
                        f"(n_segments, {params.n_mels}, {params.n_frames}) mel spectrograms")
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise UserError(f"{path}: {key} holds {array.dtype} values, not numbers")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise UserError(f"{path}: {key} holds NaN or infinite values")
    low, high = UNIT_RANGE
    if scale == "dB" and array.min() >= low and array.max() <= high:
        warn(f"{path.name}: {key} lies within [{array.min():.2f}, {array.max():.2f}]: read as the model's [0, 1] "
             f"scale of {scale} (the seed's BASIS output) and mapped back to {scale}")
        array = from_unit(np.clip(array, 0.0, 1.0), scale, params)
    if scale == "power":
        array = power_to_db(np.maximum(array, 0.0), params)
    return np.clip(array, params.db_min, params.db_max).astype(np.float32)


def _numbered_keys(keys, prefix: str) -> list[str]:
    numbers = sorted(int(m.group(1)) for k in keys if (m := re.fullmatch(prefix + r"(\d+)", k)))
    return [f"{prefix}{n}" for n in numbers]


def load_results(path: str | os.PathLike, params: SpectrogramParams = SpectrogramParams(),
                 scale: str = "dB") -> BasisResults:
    """Read and check a results.npz (module docstring).

    Args:
        path: the results.npz file.
        scale: what the spectrograms hold, "dB" or "power" (the seed's ``--scale``).
    Raises:
        UserError: missing file or keys (named), mismatched shapes, bad values.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist: give the folder holding the results.npz of run_basis_sep.py")
    if scale not in ("dB", "power"):
        raise UserError(f"scale must be dB or power, got {scale!r}")
    try:
        data = np.load(path, allow_pickle=False)
        keys = set(data.files)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise UserError(f"{path} is not a readable .npz file ({err})") from None
    estimates = _numbered_keys(keys, "x")
    count = max(2, len(estimates))
    has_gt = bool(_numbered_keys(keys, "gt"))
    expected = ([f"x{i}" for i in range(1, count + 1)] + [f"gt{i}" for i in range(1, count + 1) if has_gt]
                + ["mixed"])
    missing = [k for k in expected if k not in keys]
    if missing:
        raise UserError(f"{path} has no key {', '.join(repr(k) for k in missing)} (found: "
                        f"{', '.join(sorted(keys)) or 'nothing'}); a BASIS results file holds x1, x2, ... "
                        "(estimates), gt1, gt2, ... (ground truth, if any) and mixed")
    try:
        x = [_spectrogram(data, f"x{i}", path, params, scale) for i in range(1, count + 1)]
        gt = [_spectrogram(data, f"gt{i}", path, params, scale) for i in range(1, count + 1)] if has_gt else []
        mixture = _spectrogram(data, "mixed", path, params, scale)
        n_segments = x[0].shape[0]
        names = [f"x{i}" for i in range(1, count + 1)] + [f"gt{i}" for i in range(1, len(gt) + 1)] + ["mixed"]
        for key, array in zip(names, x + gt + [mixture]):
            if array.shape[0] != n_segments:
                raise UserError(f"{path}: {key} has {array.shape[0]} segments, x1 has {n_segments}")

        stft_mixture = None
        if "stft_mixture" in keys:
            stft_mixture = np.asarray(data["stft_mixture"])
            shape = (n_segments, params.n_freqs, params.n_frames)
            if stft_mixture.shape != shape or not np.iscomplexobj(stft_mixture):
                raise UserError(f"{path}: stft_mixture is {stft_mixture.dtype} {tuple(stft_mixture.shape)}, "
                                f"expected complex {shape} (one STFT per mixture segment)")
            if not np.all(np.isfinite(stft_mixture)):
                raise UserError(f"{path}: stft_mixture holds NaN or infinite values")
            stft_mixture = stft_mixture.astype(np.complex64)

        sources = None
        if "sources" in keys:
            sources = [str(s) for s in np.asarray(data["sources"]).reshape(-1)]
            if len(sources) != count:
                raise UserError(f"{path}: sources names {len(sources)} sources ({', '.join(sources)}) but there are "
                                f"{count} estimates (x1..x{count})")
            bad = [s for s in sources if not s or "/" in s or "\\" in s or s.startswith(".")]
            if bad or len(set(sources)) != len(sources):
                raise UserError(f"{path}: source names must be distinct file-name-safe words, got {sources}")

        n_samples = None
        if "n_samples" in keys:
            value = np.asarray(data["n_samples"])
            if value.size != 1 or not np.issubdtype(value.dtype, np.integer):
                raise UserError(f"{path}: n_samples must be one integer, got {value.dtype} {tuple(value.shape)}")
            n_samples = int(value.reshape(()))
            if not (n_segments - 1) * params.segment_samples < n_samples <= n_segments * params.segment_samples:
                raise UserError(f"{path}: n_samples = {n_samples} does not match {n_segments} segments of "
                                f"{params.segment_samples} samples")
    except UserError:
        raise
    except (ValueError, TypeError, zipfile.BadZipFile, OSError) as err:
        raise UserError(f"{path} could not be read ({type(err).__name__}: {err})") from None
    finally:
        data.close()
    return BasisResults(path, np.stack(x), np.stack(gt) if gt else None, mixture, stft_mixture, sources, n_samples)


@dataclasses.dataclass
class InvertedResults:
    """Audio of a results file: estimates and ground truth (n_sources, n_samples) (ground truth None when the file
    has none), mixture (n_samples,), float32."""

    estimates: np.ndarray
    ground_truth: Optional[np.ndarray]
    mixture: np.ndarray
    seconds: float


def invert_results(results: BasisResults, params: SpectrogramParams, algorithm: str, method: str,
                   n_samples: int, mixture_audio: Optional[np.ndarray] = None, **options) -> InvertedResults:
    """Invert the estimates, the ground truth and the mixture of a results file the same way.

    The estimates and the ground truth go through ``algorithm`` (the Wiener filter shares the mixture among the
    ground-truth sources exactly as among the estimates); the mixture's own spectrogram goes through mixture phase
    (Griffin-Lim when ``algorithm`` is "griffin"), as the seed did.

    Args:
        algorithm, method, options: see :func:`separation.inversion.invert_mel`.
        mixture_audio: (n_samples,) mixture waveform; required unless ``algorithm`` is "griffin".
    """
    start = time.perf_counter()
    common = dict(params=params, method=method, n_samples=n_samples, mixture_audio=mixture_audio, **options)
    estimates = inversion.invert_mel(results.estimates, algorithm=algorithm, **common)
    ground_truth = (inversion.invert_mel(results.ground_truth, algorithm=algorithm, **common)
                    if results.ground_truth is not None else None)
    mixture_algorithm = "griffin" if algorithm == "griffin" else "reuse_phase"
    if mixture_algorithm != "griffin":
        common.pop("griffin_init", None)
    mixture = inversion.invert_mel(results.mixture[None], algorithm=mixture_algorithm, **common)[0]
    return InvertedResults(estimates, ground_truth, mixture, time.perf_counter() - start)


def inversion_lengths(results: BasisResults, song, params: SpectrogramParams) -> tuple[int, int]:
    """(n_samples, scored_length): the length to invert to and the length to score, in samples. ``n_samples`` is
    the file's, else the song's when it covers every segment, else all segments in full; the scores cover the
    song's length when it is shorter (with a warning). ``song``: the loaded song, or None."""
    padded = results.n_segments * params.segment_samples
    n_samples = results.n_samples
    if n_samples is None:
        covers = song is not None and song.n_samples > padded - params.segment_samples
        n_samples = song.n_samples if covers else padded
    if song is not None and song.n_samples < n_samples:
        warn(f"the song {song.name} is {song.n_samples / params.sample_rate:.2f} s long, shorter than the "
             f"{n_samples / params.sample_rate:.2f} s of the estimates: scores cover its length only")
        return n_samples, song.n_samples
    return n_samples, n_samples


def inversion_mixture(results: BasisResults, song, params: SpectrogramParams) -> np.ndarray:
    """(n_samples,) the mixture waveform for mixture phase and Wiener filtering: from the file's stft_mixture, else
    the song's mix.wav.

    Raises:
        UserError: neither is there.
    """
    if results.stft_mixture is not None:
        return inversion.mixture_from_segments(results.stft_mixture, params)
    if song is not None:
        return song.mix_audio
    raise UserError(f"{results.path} has no stft_mixture and no --song_dir was given: mixture phase, Wiener "
                    "filtering and --griffin_init mixture need the mixture; pass --song_dir (a folder with mix.wav) "
                    "or use --algorithm griffin (random start)")


def write_inverted(output: Path, results: BasisResults, inverted: InvertedResults,
                   params: SpectrogramParams) -> None:
    """The inverted audio as wavs in ``output`` (``<source>.wav``, ``gt_<source>.wav``, ``mix.wav``; clipped with a
    warning above 1) and ``spectrograms.png`` (ground truth vs estimate)."""
    from datasets.preprocessing import write_estimate
    from separation import figures

    files = [(f"{n}.wav", a) for n, a in zip(results.names, inverted.estimates)]
    if inverted.ground_truth is not None:
        files += [(f"gt_{n}.wav", a) for n, a in zip(results.names, inverted.ground_truth)]
    for file_name, audio in files + [("mix.wav", inverted.mixture)]:
        write_estimate(output / file_name, audio, params.sample_rate)
    references = dict(zip(results.names, results.ground_truth)) if results.ground_truth is not None else {}
    figures.plot_spectrogram_comparison(references, dict(zip(results.names, results.estimates)),
                                        output / "spectrograms.png", params,
                                        title=f"{output.parent.name}: ground truth vs BASIS estimate (dB)")
