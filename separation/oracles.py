"""Oracle systems: the best a method of a given kind could do when it knows the true sources.

All work on one mono song: the mixture ``(n_samples,)`` and its sources ``(n_sources, n_samples)``, float waveforms
at ``params.sample_rate``, and return estimates ``(n_sources, n_samples)`` float32 of the song's length.

* ``IBM1``, ``IBM2`` -- ideal binary mask (sigsep-mus-oracle): the mixture STFT bin goes to source j where
  ``|S_j|^alpha / |X|^alpha > 0.5`` (alpha 1: magnitudes, 2: powers);
* ``IRM1``, ``IRM2`` -- ideal ratio mask ``|S_j|^alpha / sum_k |S_k|^alpha`` applied to the mixture STFT;
* ``MWF`` -- the multichannel Wiener filter with the true source power spectra and spatial covariances; on a mono
  song the spatial covariance of every source is 1, so it is the single-channel Wiener filter
  ``|S_j|^2 / sum_k |S_k|^2 * X`` (numerically the same estimate as ``IRM2``; kept under its own name because the
  field's tables list both);
* ``MEL`` -- the sources' true mel spectrograms (dB, 96 x 64 per segment, exactly what BASIS estimates) pushed
  through the same inversion as BASIS results (:func:`separation.inversion.invert_mel`; by default the Wiener filter
  per frame): the gap between ``MEL`` and an ``IRM``/``MWF`` oracle is the cost of the mel representation and its
  inversion, the gap between a BASIS result and ``MEL`` the cost of the separation itself.

The mask oracles use one centred STFT of the whole song (n_fft 2048, hop 512, Hann, as the rest of the suite) and
its least-squares inverse (:func:`core.spectral.stft` / :func:`core.spectral.istft`). Where every
source is silent in a bin, ratio masks share the mixture equally, so ``IRM`` and ``MWF`` estimates sum to the mixture.
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from core import spectral
from core.errors import UserError
from core.spectral import SpectrogramParams, mel_spectrogram_segments, segment_audio
from separation import inversion

ORACLES = ("IBM1", "IBM2", "IRM1", "IRM2", "MWF", "MEL")


def _ratio_masks(spectrograms: np.ndarray) -> np.ndarray:
    """Masks spectrograms_j / sum_k spectrograms_k, (n_sources, ...); an equal share where the sum is 0."""
    total = spectrograms.sum(axis=0)
    positive = total > np.finfo(spectrograms.dtype).tiny
    return np.where(positive, spectrograms / np.where(positive, total, 1), 1.0 / spectrograms.shape[0])


def ideal_binary_masks(stft_sources: np.ndarray, stft_mixture: np.ndarray, alpha: float = 1.0,
                       theta: float = 0.5) -> np.ndarray:
    """Binary masks ``|S_j|^alpha / |X|^alpha > theta``.

    Args:
        stft_sources: (n_sources, n_freqs, n_frames) complex source STFTs S_j.
        stft_mixture: (n_freqs, n_frames) complex mixture STFT X.
    Returns:
        (n_sources, n_freqs, n_frames) float masks in {0, 1}.
    """
    source_level = np.abs(stft_sources) ** alpha
    mixture_level = np.abs(stft_mixture) ** alpha
    return (source_level > theta * mixture_level).astype(np.float64)


def ideal_ratio_masks(stft_sources: np.ndarray, alpha: float = 2.0) -> np.ndarray:
    """Ratio masks ``|S_j|^alpha / sum_k |S_k|^alpha`` (summing to one), (n_sources, n_freqs, n_frames)."""
    return _ratio_masks(np.abs(stft_sources) ** alpha)


def _check_song(mixture: np.ndarray, sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mixture = np.asarray(mixture, dtype=np.float64).reshape(-1)
    sources = np.asarray(sources, dtype=np.float64)
    if sources.ndim != 2 or sources.shape[1] != mixture.shape[0]:
        raise UserError(f"sources must be (n_sources, {mixture.shape[0]}) like the mixture, got {sources.shape}")
    if sources.shape[0] < 1:
        raise UserError("an oracle needs at least one source")
    return mixture, sources


def oracle_separation(method: str, mixture: np.ndarray, sources: np.ndarray,
                      params: SpectrogramParams = SpectrogramParams(), mel_algorithm: str = "wiener",
                      mel_method: str = "frame", **inversion_options) -> np.ndarray:
    """Estimates of every source by one oracle system.

    Args:
        method: one of :data:`ORACLES`.
        mixture: (n_samples,) mixture waveform.
        sources: (n_sources, n_samples) true source waveforms (same length as the mixture).
        mel_algorithm, mel_method, inversion_options: how ``MEL`` inverts the true mel spectrograms
            (arguments of :func:`separation.inversion.invert_mel`; ignored by the mask oracles).
    Returns:
        (n_sources, n_samples) float32 estimates.
    """
    if method not in ORACLES:
        raise UserError(f"unknown oracle {method!r}; choose from {', '.join(ORACLES)}")
    mixture, sources = _check_song(mixture, sources)
    n_samples = mixture.shape[0]
    if method == "MEL":
        mel_db = np.stack([mel_spectrogram_segments(segment_audio(source, params.segment_samples), params, "dB")
                           for source in sources])
        return inversion.invert_mel(mel_db, params, algorithm=mel_algorithm, method=mel_method,
                                    n_samples=n_samples, mixture_audio=mixture, **inversion_options)
    stft_mixture = spectral.stft(mixture, params)
    stft_sources = spectral.stft(sources, params)
    if method.startswith("IBM"):
        masks = ideal_binary_masks(stft_sources, stft_mixture, alpha=float(method[3:]))
    elif method.startswith("IRM"):
        masks = ideal_ratio_masks(stft_sources, alpha=float(method[3:]))
    else:  # MWF, mono: v_j / sum_k v_k with v_j = |S_j|^2 and unit spatial covariance
        masks = _ratio_masks(np.abs(stft_sources) ** 2)
    estimates = spectral.istft(masks * stft_mixture, params, length=n_samples)
    return estimates.astype(np.float32)


def run_oracles(mixture: np.ndarray, sources: np.ndarray, methods: Optional[Iterable[str]] = None,
                params: SpectrogramParams = SpectrogramParams(), **options) -> dict[str, np.ndarray]:
    """Every requested oracle on one song: {method: (n_sources, n_samples) float32} in the order asked."""
    methods = list(ORACLES if methods is None else methods)
    unknown = [m for m in methods if m not in ORACLES]
    if unknown:
        raise UserError(f"unknown oracle {unknown[0]!r}; choose from {', '.join(ORACLES)}")
    return {method: oracle_separation(method, mixture, sources, params, **options) for method in methods}
