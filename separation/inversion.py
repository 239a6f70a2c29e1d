"""Mel spectrograms back to audio: the inversion recipes (the transforms they use live in :mod:`core.spectral`).

Units and shapes as in :mod:`core.spectral` (docs/algorithms.md §1, §5): *mel* ``(n_sources, n_segments, n_mels,
n_frames)`` in dB (ref 1.0, clipped to [-100, 20]) or mel **power**; *magnitude* ``|STFT|``; *audio* float32 at
16 kHz, trimmed to the song's true length ``n_samples``.

Steps of an inversion (:func:`invert_mel`):

1. **mel power -> linear magnitude** by non-negative least squares against librosa's Slaney mel filters
   (:func:`core.spectral.mel_to_magnitude`, the square root of the NNLS power, as librosa's ``mel_to_stft``).
2. **phase**: ``"griffin"`` -- fast Griffin-Lim (:func:`core.spectral.griffin_lim`) from random phase (librosa, the
   seed) or, when the mixture is known, from the mixture's phase (``griffin_init="mixture"``); ``"reuse_phase"`` --
   the estimated magnitude with the phase of the mixture's STFT (:func:`mixture_phase`); ``"wiener"`` -- the
   single-channel Wiener filter ``S_j = |s_j|^2 / sum_k |s_k|^2 * X`` on the mixture STFT ``X``
   (:func:`wiener_filter`: the masks sum to one, so the estimates sum to the mixture). Griffin-Lim from the
   mixture's phase drifts away from it as it iterates (its SDR ends between the random start's and mixture
   phase's). The mixture STFT is taken from the whole mixture at the frames' true positions
   (:func:`core.spectral.stft_song`).
3. **synthesis**: one weighted overlap-add of every segment's frames at their true positions
   (:func:`core.spectral.synthesise_song`), ``"frame"`` (each segment cross-faded into its neighbours over
   ``seam_overlap`` samples) or ``"whole"`` (one plain overlap-add of the song); see :mod:`core.spectral` for why the
   seams need it.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from core import spectral
from core.spectral import (DEFAULT_GL_ITER, DEFAULT_MOMENTUM, DEFAULT_NNLS_ITER, DEFAULT_SEAM_OVERLAP, METHODS,
                        SpectrogramParams, check_choice, song_length)
from core.errors import UserError

ALGORITHMS = ("griffin", "reuse_phase", "wiener")
GRIFFIN_INITS = ("random", "mixture")


# ---------------------------------------------------------------------------------------------------- phase

def mixture_phase(magnitude: np.ndarray, stft_mixture: np.ndarray) -> np.ndarray:
    """The estimated magnitude with the mixture's phase: ``|s| * X / |X|`` (phase 0 where X = 0).

    Args:
        magnitude: (..., n_freqs, n_frames) linear magnitude (broadcast against ``stft_mixture``).
        stft_mixture: (..., n_freqs, n_frames) complex mixture STFT.
    Returns:
        complex STFT of the broadcast shape.
    """
    return magnitude * spectral.unit_phase(stft_mixture)


def wiener_filter(magnitudes: np.ndarray, stft_mixture: np.ndarray) -> np.ndarray:
    """Single-channel Wiener filter ``S_j = |s_j|^2 / sum_k |s_k|^2 * X``.

    Where every source is silent (sum 0: e.g. bins outside the mel range) the mixture is shared equally, so the
    masks always sum to one and the estimates sum to the mixture.

    Args:
        magnitudes: (n_sources, ..., n_freqs, n_frames) linear magnitudes |s_k| of the sources.
        stft_mixture: (..., n_freqs, n_frames) complex mixture STFT X.
    Returns:
        (n_sources, ..., n_freqs, n_frames) complex source STFTs.
    """
    power = np.square(magnitudes, dtype=np.result_type(magnitudes, np.float32))
    total = power.sum(axis=0)
    positive = total > np.finfo(power.dtype).tiny
    masks = np.where(positive, power / np.where(positive, total, 1), 1.0 / power.shape[0])
    return masks * stft_mixture


# ----------------------------------------------------------------------------------------------- whole recipe

def mixture_from_segments(stft_mixture: np.ndarray, params: SpectrogramParams = SpectrogramParams(),
                          n_samples: Optional[int] = None) -> np.ndarray:
    """The mixture waveform from its per-segment STFT (exact: :func:`core.spectral.istft_segments`, joined, trimmed).

    Args:
        stft_mixture: (n_segments, n_freqs, n_frames) complex, as ``Song.stft_mixture`` / ``results.npz``.
    Returns:
        (n_samples,) float32.
    """
    segments = spectral.istft_segments(np.asarray(stft_mixture), params)
    n_samples = song_length(n_samples, segments.shape[0], params)
    return segments.reshape(-1)[:n_samples].astype(np.float32)


def invert_mel(mel: np.ndarray, params: SpectrogramParams = SpectrogramParams(), algorithm: str = "wiener",
               method: str = "frame", n_samples: Optional[int] = None, mixture_audio: Optional[np.ndarray] = None,
               scale: str = "dB", n_iter: int = DEFAULT_GL_ITER, momentum: float = DEFAULT_MOMENTUM,
               nnls_iter: int = DEFAULT_NNLS_ITER, seam_overlap: int = DEFAULT_SEAM_OVERLAP,
               seed: Optional[int] = 0, griffin_init: str = "random") -> np.ndarray:
    """Audio of every source from its mel spectrograms (the whole recipe of the module docstring).

    Args:
        mel: (n_sources, n_segments, n_mels, n_frames) mel spectrograms, dB (``scale="dB"``, clipped to
            [db_min, db_max]) or mel power (``scale="power"``).
        algorithm: "griffin" (Griffin-Lim, no mixture needed), "reuse_phase" (mixture phase) or "wiener"
            (single-channel Wiener filter of the mixture; with one source it returns the mixture).
        method: "frame" or "whole" (see the module docstring).
        n_samples: the song's true length; the output is trimmed to it (default: every segment, in full).
        mixture_audio: (n_mixture_samples,) mixture waveform, needed by "reuse_phase" and "wiener"; zero-padded
            or cut to ``n_segments * segment_samples``.
        n_iter, momentum, seed: Griffin-Lim iterations, momentum and random start.
        nnls_iter: FISTA iterations of the mel -> linear step.
        seam_overlap: crossfade half-length (samples) of the "frame" method.
        griffin_init: "random" (librosa's and the seed's start) or "mixture" (Griffin-Lim starts from the
            mixture's phase, which needs ``mixture_audio``; far better SDR, since a random start cannot find the
            sources' own phase).
    Returns:
        (n_sources, n_samples) float32 audio.
    Raises:
        UserError: bad shapes or choices, or no mixture for a mixture-based algorithm.
    """
    check_choice("scale", scale, ("dB", "power"))
    mel = np.asarray(mel)
    if mel.ndim != 4 or mel.shape[-2:] != (params.n_mels, params.n_frames):
        raise UserError(f"mel spectrograms must be (n_sources, n_segments, {params.n_mels}, {params.n_frames}), "
                        f"got {tuple(mel.shape)}")
    check_choice("algorithm", algorithm, ALGORITHMS)
    song_length(n_samples, mel.shape[1], params)
    check_choice("griffin_init", griffin_init, GRIFFIN_INITS)
    if (algorithm != "griffin" or griffin_init == "mixture") and mixture_audio is None:  # before the NNLS
        _no_mixture(algorithm)
    power = spectral.db_to_power(mel) if scale == "dB" else np.asarray(mel, dtype=np.float64)
    return invert_magnitude(spectral.mel_to_magnitude(power, params, nnls_iter), params, algorithm, method, n_samples,
                            mixture_audio, n_iter=n_iter, momentum=momentum, seam_overlap=seam_overlap, seed=seed,
                            griffin_init=griffin_init)


def _no_mixture(algorithm: str):
    raise UserError(f"the {algorithm!r} inversion needs the mixture (its audio or STFT)"
                    + ("; use the 'griffin' algorithm without one" if algorithm != "griffin"
                       else " to start from its phase; use griffin_init='random' without one"))


def invert_magnitude(magnitude: np.ndarray, params: SpectrogramParams = SpectrogramParams(),
                     algorithm: str = "wiener", method: str = "frame", n_samples: Optional[int] = None,
                     mixture_audio: Optional[np.ndarray] = None, n_iter: int = DEFAULT_GL_ITER,
                     momentum: float = DEFAULT_MOMENTUM, seam_overlap: int = DEFAULT_SEAM_OVERLAP,
                     seed: Optional[int] = 0, griffin_init: str = "random") -> np.ndarray:
    """Audio of every source from linear STFT magnitudes of its segments: steps 2 and 3 of :func:`invert_mel`.

    Useful to try several algorithms and methods on one NNLS result (:func:`core.spectral.mel_to_magnitude`), or to
    invert magnitudes that do not come from a mel spectrogram.

    Args:
        magnitude: (n_sources, n_segments, n_freqs, n_frames) linear magnitude |STFT| of each segment.
        algorithm, method, n_samples, mixture_audio, n_iter, momentum, seam_overlap, seed, griffin_init: as
            :func:`invert_mel`.
    Returns:
        (n_sources, n_samples) float32 audio.
    """
    check_choice("algorithm", algorithm, ALGORITHMS)
    check_choice("method", method, METHODS)
    magnitude = np.asarray(magnitude)
    if magnitude.ndim != 4 or magnitude.shape[-2:] != (params.n_freqs, params.n_frames):
        raise UserError(f"magnitudes must be (n_sources, n_segments, {params.n_freqs}, {params.n_frames}), "
                        f"got {tuple(magnitude.shape)}")
    n_segments = magnitude.shape[1]
    n_samples = song_length(n_samples, n_segments, params)
    check_choice("griffin_init", griffin_init, GRIFFIN_INITS)
    magnitude = magnitude.astype(np.float32, copy=False)  # (K, n_seg, F, T)
    stft_mixture = None
    if algorithm != "griffin" or griffin_init == "mixture":
        if mixture_audio is None:
            _no_mixture(algorithm)
        mixture = np.asarray(mixture_audio, dtype=np.float32).reshape(-1)
        stft_mixture = spectral.stft_song(mixture, params, n_segments)  # (n_seg, F, T) complex64
    if algorithm == "griffin":
        spec = spectral.griffin_lim(magnitude, params, method, n_iter, momentum, seed, init_phase=stft_mixture)
    elif algorithm == "reuse_phase":
        spec = mixture_phase(magnitude, stft_mixture)
    else:
        spec = wiener_filter(magnitude, stft_mixture)
    song = spectral.synthesise_song(spec.astype(np.complex64, copy=False), params, n_samples, method, seam_overlap)
    return np.ascontiguousarray(song, dtype=np.float32)
