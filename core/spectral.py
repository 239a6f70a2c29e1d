"""The suite's audio transforms, in one place: segments, mel spectrograms, STFT and its inverse, the mel -> linear
non-negative least squares and Griffin-Lim phase retrieval. Datasets, training, sampling, BASIS and the inversion
recipes (:mod:`separation.inversion`) all use these.

Conventions used everywhere in the suite (docs/algorithms.md §1, §5):

* *audio*: float32 mono waveforms at ``params.sample_rate`` (16 kHz), values in [-1, 1];
* a *segment* is ``params.segment_samples`` (32 640 samples = 2.04 s) cut back to back, the last one padded with zeros;
* a *mel spectrogram* of one segment is ``(n_mels, n_frames) = (96, 64)``, mel **power** (|STFT|^2 through
  librosa's Slaney mel filters), either kept as power clipped to ``[10^(db_min/10), 10^(db_max/10)]`` or in
  **dB** (``10 log10(power)``, ref 1.0) clipped to ``[db_min, db_max] = [-100, 20]``;
* *magnitude*: linear STFT magnitude ``|STFT|`` (not power, not dB), ``(..., n_freqs, n_frames)`` = (..., 1025, 64);
* *STFT*: complex, librosa's orientation ``(..., n_freqs, n_frames)``, centred frames, one periodic Hann window
  (:func:`hann_window`), ``n_fft`` 2048, hop 512, the signal padded by ``params.pad_mode`` (reflect, the seed's) at
  its two ends.

Mel spectrograms of batches of segments are computed with one vectorised STFT (a few segments at a time, on
parallel threads) instead of one librosa call per segment.

**mel power -> linear power** (:func:`mel_to_power`): non-negative least squares against the mel filters,
``min_{P >= 0} ||A P - M||_F`` for all frames at once, by accelerated projected gradient (FISTA) started from the
clipped pseudo-inverse (librosa's starting point). ``A`` has two non-zeros per column, so each iteration is two
sparse products, run on blocks of frames that stay in the CPU caches, on parallel threads. On ground-truth mels 20
iterations already match ``librosa.feature.inverse.mel_to_stft``; on noisy mels about 100 are needed to be no worse
than librosa on every frame; the default 150 leave a margin, about a hundred times faster.

**Griffin-Lim** (:func:`griffin_lim`): fast Griffin-Lim (Perraudin et al. 2013, librosa's ``momentum`` scheme)
batched over every segment and source, from random phase or from a given STFT's phase; per segment ("frame") or on
the whole song ("whole", phase continuous across segments).

How the segments are joined (the seam handling, beyond the seed). Segments are cut back to back every
``segment_samples`` = 32 640 samples = 63.75 hops, and each segment has its own 64 centred frames. Two facts follow:

* concatenating the spectrograms and calling ``librosa.istft`` once (the seed's "whole") plays 64 frames as 64
  hops = 32 768 samples per segment: the audio drifts 128 samples (8 ms) per segment, 240 ms after a minute, and no
  longer lines up with the mixture or the references. Here every frame keeps its true position: frame ``k`` of
  segment ``j`` is centred on sample ``j * segment_samples + k * hop`` of the song;
* frames near a border reach ``n_fft / 2`` = 1 024 samples into the neighbouring segment, so at every seam frames
  of both segments overlap. Concatenating per-segment inverses (the seed's "frame") throws that overlap away, and
  independently estimated segments (Griffin-Lim's arbitrary phase, masks that change from one segment to the next)
  then meet with a jump: a click every 2.04 s.

Both methods therefore re-synthesise the song from **all frames of all segments at their true positions with one
weighted overlap-add** (:func:`synthesise_song`)::

    y(t) = sum_{j,k} a_j(t) w(t - c_jk) f_jk(t - c_jk)  /  sum_{j,k} a_j(t) w(t - c_jk)^2

(``f_jk`` the inverse FFT of frame k of segment j, ``w`` the Hann window, ``c_jk`` the frame's start). For any
positive weights ``a_j`` this is exact for a consistent STFT (``f = w x`` gives ``y = x``), so it never degrades a
correct reconstruction, and it is smooth wherever the weights are smooth. "whole" uses ``a_j = 1`` (a plain
overlap-add of every frame: the classic least-squares inverse on the song's true frame grid). "frame" uses
``a_j = 1`` inside segment ``j`` and a raised-cosine taper over ``seam_overlap`` samples (default 512, 32 ms) on
each side of it, so near a seam the two segments' estimates are cross-faded over about 64 ms with the proper
window normalisation, and a segment's frames never reach further than ``seam_overlap`` into its neighbour.
``seam_overlap=0`` gives back the seed's plain concatenation of per-segment inverses (clicks included).

This was chosen over a crossfade of per-segment inverses because the part of a per-segment inverse that lies past
its border is reconstructed from frames padded by reflection (time-reversed audio) and from a single, tapered frame
(``f / w`` blows up at the window's edge); inside the weighted overlap-add those frames only count with their window
weight against the neighbour's well-covered frames. For the same reason the mixture STFT used by "reuse_phase" and
"wiener" is taken from the whole mixture at the frames' true positions (:func:`stft_song`: border frames see the
real neighbouring audio, not a reflection); away from the borders these frames equal the per-segment STFT. With
those two algorithms, "frame" and "whole" therefore differ only in how the two segments' frames are weighted near a
seam (their outputs are nearly identical); with Griffin-Lim they differ in how the phase is retrieved.

Everything is vectorised numpy (scipy.fft); the STFT and its inverse are batched over every leading axis.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
from typing import Optional

import numpy as np
import scipy.fft
import scipy.signal
import scipy.sparse

from core.errors import UserError

SCALES = ("dB", "power")


@dataclasses.dataclass(frozen=True)
class SpectrogramParams:
    """Parameters of the mel spectrograms (defaults: the seed's, docs/algorithms.md §1)."""

    sample_rate: int = 16000          # Hz
    segment_samples: int = 32640      # samples per segment (2.04 s at 16 kHz)
    n_fft: int = 2048                 # STFT size, samples
    hop_length: int = 512             # STFT hop, samples
    n_mels: int = 96                  # mel bands
    fmin: float = 125.0               # Hz
    fmax: float = 7600.0              # Hz
    db_min: float = -100.0            # floor, dB (ref power 1.0)
    db_max: float = 20.0              # ceiling, dB
    pad_mode: str = "reflect"         # centred STFT padding, as librosa <= 0.9 (the seed's)

    def __post_init__(self):
        checks = [
            (self.sample_rate > 0, "sample_rate must be positive"),
            (self.segment_samples >= self.hop_length, "segment_samples must be at least hop_length"),
            (self.n_fft > 0 and self.hop_length > 0, "n_fft and hop_length must be positive"),
            (self.n_mels > 0, "n_mels must be positive"),
            (0 <= self.fmin < self.fmax <= self.sample_rate / 2,
             f"need 0 <= fmin < fmax <= sample_rate/2 (got fmin={self.fmin}, fmax={self.fmax})"),
            (self.db_min < self.db_max, "db_min must be below db_max"),
            (self.pad_mode in ("reflect", "constant"), "pad_mode must be 'reflect' or 'constant'"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"bad spectrogram parameters: {message}")

    @property
    def n_frames(self) -> int:
        """STFT frames per segment (64 with the defaults)."""
        return 1 + self.segment_samples // self.hop_length

    @property
    def n_freqs(self) -> int:
        """Linear STFT bins (1025 with the defaults)."""
        return self.n_fft // 2 + 1

    @property
    def segment_seconds(self) -> float:
        return self.segment_samples / self.sample_rate

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of one segment's mel spectrogram, (n_mels, n_frames)."""
        return (self.n_mels, self.n_frames)

    @property
    def power_min(self) -> float:
        return 10.0 ** (self.db_min / 10.0)

    @property
    def power_max(self) -> float:
        return 10.0 ** (self.db_max / 10.0)



# ------------------------------------------------------------------------------------------------ segments

def segment_audio(audio: np.ndarray, segment_samples: int = 32640) -> np.ndarray:
    """Cut a waveform into back-to-back segments, zero-padding the last one.

    Args:
        audio: (n_samples,) waveform.
        segment_samples: samples per segment.
    Returns:
        (n_segments, segment_samples) array of the same dtype, n_segments = ceil(n_samples / segment_samples)
        (at least 1). The original length is ``audio.shape[0]``: trim with ``concat(...)[:n_samples]``.
    """
    n_segments = max(1, -(-audio.shape[0] // segment_samples))
    padded = np.zeros(n_segments * segment_samples, dtype=audio.dtype)
    padded[: audio.shape[0]] = audio
    return padded.reshape(n_segments, segment_samples)


# ------------------------------------------------------------------------------------ mel spectrograms

@functools.lru_cache(maxsize=8)
def mel_filterbank(params: SpectrogramParams) -> np.ndarray:
    """librosa's Slaney mel filters, (n_mels, n_freqs) float64."""
    import librosa

    return librosa.filters.mel(sr=params.sample_rate, n_fft=params.n_fft, n_mels=params.n_mels,
                               fmin=params.fmin, fmax=params.fmax, dtype=np.float64)


@functools.lru_cache(maxsize=8)
def _sparse_filterbank(params: SpectrogramParams, dtype: type) -> "scipy.sparse.csr_matrix":
    """The mel filters as a sparse matrix: 98 % of the weights are zero, so this is ~50x less work than dense."""
    return scipy.sparse.csr_matrix(mel_filterbank(params).astype(dtype))


@functools.lru_cache(maxsize=1)
def _thread_pool():
    return concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="melspec")


def _mel_power_chunk(stft_frames_first: np.ndarray, params: SpectrogramParams) -> np.ndarray:
    """(n, n_frames, n_freqs) complex -> (n, n_mels, n_frames) mel power, through the sparse filter bank."""
    power = stft_frames_first.real ** 2
    power += stft_frames_first.imag ** 2
    n, n_frames, n_freqs = power.shape
    mel = _sparse_filterbank(params, power.dtype.type) @ power.reshape(n * n_frames, n_freqs).T
    return mel.reshape(params.n_mels, n, n_frames).transpose(1, 0, 2)


def stft_segments(segments: np.ndarray, params: SpectrogramParams, chunk: int = 16) -> np.ndarray:
    """Centred STFT of every segment independently (as ``librosa.stft`` on each segment), in float64.

    Args:
        segments: (n_segments, segment_samples) real waveform segments.
        params: spectrogram parameters (n_fft, hop_length, pad_mode; periodic Hann window).
    Returns:
        (n_segments, n_freqs, n_frames) complex128 STFT, librosa's orientation (frequency first).
    """
    segments = np.asarray(segments, dtype=np.float64)
    out = np.empty((segments.shape[0], params.n_freqs, params.n_frames), dtype=np.complex128)
    for start in range(0, segments.shape[0], chunk):
        out[start:start + chunk] = _analyse_signals(segments[start:start + chunk], params, 1).transpose(0, 2, 1)
    return out


def power_to_db(power: np.ndarray, params: SpectrogramParams) -> np.ndarray:
    """10 log10(power) (ref 1.0) clipped to [db_min, db_max]; silence gives db_min, never -inf or NaN."""
    db = 10.0 * np.log10(np.maximum(power, params.power_min))
    return np.clip(db, params.db_min, params.db_max)


def clip_power(power: np.ndarray, params: SpectrogramParams) -> np.ndarray:
    """Mel power clipped to [10^(db_min/10), 10^(db_max/10)] (the power-scale twin of :func:`power_to_db`)."""
    return np.clip(power, params.power_min, params.power_max)


def db_to_power(db: np.ndarray) -> np.ndarray:
    """Inverse of :func:`power_to_db` inside the clipping range."""
    return np.power(10.0, np.asarray(db, dtype=np.float64) / 10.0)


def mel_spectrogram_segments(segments: np.ndarray, params: SpectrogramParams, scale: str = "dB",
                             return_stft: bool = False, chunk: int = 8):
    """Mel spectrograms of waveform segments, in dB or power, clipped.

    Computed in float32, a few segments at a time from STFT to mel (the working set stays in the CPU cache),
    chunks spread over the CPU cores by threads, with a sparse mel filter bank: about 7x faster than one librosa
    call per segment on 2 cores, and within 1e-3 dB of librosa in float64 above the floor.

    Args:
        segments: (n_segments, segment_samples) waveform segments (see :func:`segment_audio`).
        params: spectrogram parameters.
        scale: "dB" (clipped to [db_min, db_max] dB) or "power" (mel power clipped to the same range).
        return_stft: also return the complex STFT of every segment.
        chunk: segments processed together.
    Returns:
        (n_segments, n_mels, n_frames) float32, and if asked the (n_segments, n_freqs, n_frames) complex64 STFT.
    """
    if scale not in SCALES:
        raise UserError(f"scale must be one of {SCALES}, got {scale!r}")
    segments = np.asarray(segments, dtype=np.float32)
    n_segments = segments.shape[0]
    mel = np.empty((n_segments, params.n_mels, params.n_frames), dtype=np.float32)
    stft = np.empty((n_segments, params.n_freqs, params.n_frames), np.complex64) if return_stft else None

    def transform(start: int) -> None:  # one chunk, STFT to mel; chunks write disjoint slices
        spectrum = _analyse_signals(segments[start:start + chunk], params, workers=1)  # chunks run on threads
        mel[start:start + chunk] = _mel_power_chunk(spectrum, params)
        if return_stft:
            stft[start:start + chunk] = spectrum.transpose(0, 2, 1)

    starts = range(0, n_segments, chunk)
    if len(starts) > 1:  # FFT, padding and the sparse product release the GIL: chunks run on every core
        list(_thread_pool().map(transform, starts))
    else:
        transform(0)
    mel = power_to_db(mel, params) if scale == "dB" else clip_power(mel, params)
    return (mel, stft) if return_stft else mel


def audio_to_mel_segments(audio: np.ndarray, params: SpectrogramParams, scale: str = "dB") -> np.ndarray:
    """Segment a waveform (n_samples,) and return its mel spectrograms (n_segments, n_mels, n_frames) float32."""
    return mel_spectrogram_segments(segment_audio(audio, params.segment_samples), params, scale)


METHODS = ("frame", "whole")
#: samples a segment's frames reach into each neighbour in the "frame" method (raised-cosine crossfade half-length)
DEFAULT_SEAM_OVERLAP = 512
#: FISTA iterations of the mel -> linear NNLS
DEFAULT_NNLS_ITER = 150
#: Griffin-Lim iterations (librosa's default)
DEFAULT_GL_ITER = 32
DEFAULT_MOMENTUM = 0.99


# --------------------------------------------------------------------------------------------- small helpers

def _real_dtype(array: np.ndarray) -> type:
    """float32 for float32 / complex64 input, float64 otherwise."""
    return np.float32 if np.asarray(array).dtype in (np.float32, np.complex64) else np.float64


def _complex_dtype(real_dtype) -> type:
    return np.complex64 if real_dtype == np.float32 else np.complex128


def hann_window(n_fft: int, dtype=np.float64) -> np.ndarray:
    """The suite's one analysis and synthesis window: periodic Hann (librosa's), (n_fft,) of ``dtype``."""
    return _hann_window(int(n_fft), np.dtype(dtype).name)


@functools.lru_cache(maxsize=16)
def _hann_window(n_fft: int, dtype_name: str) -> np.ndarray:
    return scipy.signal.get_window("hann", n_fft, fftbins=True).astype(dtype_name)


def _check_params(params: SpectrogramParams) -> None:
    if params.n_fft % 2 or params.hop_length > params.n_fft // 2:
        raise UserError(f"inversion needs an even n_fft and hop_length <= n_fft/2 (got n_fft={params.n_fft}, "
                        f"hop_length={params.hop_length})")


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """Sum frames (..., n_frames, n_fft) placed every ``hop`` samples: (..., (n_frames - 1) * hop + n_fft)."""
    *lead, n_frames, n_fft = frames.shape
    length = (n_frames - 1) * hop + n_fft
    if n_fft % hop == 0:  # split every frame into hop-long blocks: n_fft / hop shifted additions
        ratio = n_fft // hop
        blocks = frames.reshape(*lead, n_frames, ratio, hop)
        out = np.zeros((*lead, n_frames + ratio - 1, hop), dtype=frames.dtype)
        for i in range(ratio):
            out[..., i:i + n_frames, :] += blocks[..., :, i, :]
        return out.reshape(*lead, length)
    out = np.zeros((*lead, length), dtype=frames.dtype)
    for t in range(n_frames):
        out[..., t * hop:t * hop + n_fft] += frames[..., t, :]
    return out


@functools.lru_cache(maxsize=32)
def _window_square_sum(n_fft: int, hop: int, n_frames: int, dtype_name: str) -> np.ndarray:
    """Overlap-added squared window of ``n_frames`` frames, (span,) with span = (n_frames - 1) * hop + n_fft."""
    window = hann_window(n_fft, dtype_name)
    return _overlap_add(np.broadcast_to(window ** 2, (n_frames, n_fft)).copy(), hop)


def _n_frames(n_samples: int, hop: int) -> int:
    return 1 + n_samples // hop


def _to_frames_first(stft: np.ndarray) -> np.ndarray:
    """(..., n_freqs, n_frames) -> contiguous (..., n_frames, n_freqs)."""
    return np.ascontiguousarray(np.swapaxes(stft, -1, -2))


# ------------------------------------------------------------------------- STFT / inverse STFT (frames first)

def _analyse_signals(signals: np.ndarray, params: SpectrogramParams, workers: int = -1) -> np.ndarray:
    """Centred STFT of every signal on its own: (..., n_samples) -> (..., n_frames, n_freqs), frames first.

    Each signal is padded by ``n_fft // 2`` with ``params.pad_mode`` on both sides (as ``stft_segments``).
    """
    dtype = _real_dtype(signals)
    signals = np.asarray(signals, dtype=dtype)
    n_fft, hop = params.n_fft, params.hop_length
    n_frames = _n_frames(signals.shape[-1], hop)
    pad = n_fft // 2
    padded = np.pad(signals, [(0, 0)] * (signals.ndim - 1) + [(pad, pad)], mode=params.pad_mode)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop, :][..., :n_frames, :]
    return scipy.fft.rfft(frames * hann_window(n_fft, np.dtype(dtype).name), axis=-1, workers=workers)


def _synthesise_signals(stft_tf: np.ndarray, params: SpectrogramParams, length: int,
                        workers: int = -1) -> np.ndarray:
    """Least-squares inverse of :func:`_analyse_signals`: (..., n_frames, n_freqs) -> (..., length).

    Equals ``librosa.istft(stft, hop_length, window="hann", center=True, length=length)`` frame for frame.
    """
    dtype = _real_dtype(stft_tf)
    n_fft, hop = params.n_fft, params.hop_length
    n_frames = stft_tf.shape[-2]
    frames = scipy.fft.irfft(stft_tf, n=n_fft, axis=-1, workers=workers)
    frames *= hann_window(n_fft, np.dtype(dtype).name)
    span = _overlap_add(frames, hop)
    pad = n_fft // 2
    stop = min(span.shape[-1], pad + length)
    inverse_norm = _safe_inverse(_window_square_sum(n_fft, hop, n_frames, np.dtype(dtype).name)[pad:stop])
    if stop - pad == length:
        return span[..., pad:stop] * inverse_norm
    out = np.zeros((*span.shape[:-1], length), dtype=dtype)
    out[..., :stop - pad] = span[..., pad:stop] * inverse_norm
    return out


def _analyse_song(audio: np.ndarray, params: SpectrogramParams, n_segments: int) -> np.ndarray:
    """Frames of every segment taken from the whole song at their true positions, frames first.

    Args:
        audio: (..., n_segments * segment_samples) waveforms (zero-padded songs).
    Returns:
        (..., n_segments, n_frames, n_freqs) complex: frame k of segment j is centred on sample
        ``j * segment_samples + k * hop``; the song (not each segment) is padded with ``params.pad_mode``.
    """
    frames = _song_frames(audio, params, n_segments)
    return scipy.fft.rfft(frames * hann_window(params.n_fft, frames.dtype.name), axis=-1, workers=-1)


def _song_frames(audio: np.ndarray, params: SpectrogramParams, n_segments: int) -> np.ndarray:
    """Read-only strided view of the frames of :func:`_analyse_song`, (..., n_segments, n_frames, n_fft)."""
    dtype = _real_dtype(audio)
    n_fft, hop, seg = params.n_fft, params.hop_length, params.segment_samples
    pad = n_fft // 2
    audio = np.asarray(audio, dtype=dtype)
    padded = np.ascontiguousarray(np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(pad, pad)], mode=params.pad_mode))
    item = padded.strides[-1]
    return np.lib.stride_tricks.as_strided(
        padded, shape=padded.shape[:-1] + (n_segments, params.n_frames, n_fft),
        strides=padded.strides[:-1] + (seg * item, hop * item, item), writeable=False)


@functools.lru_cache(maxsize=16)
def _seam_weights(params: SpectrogramParams, seam_overlap: Optional[int], dtype_name: str) -> np.ndarray:
    """Weight a_j of each sample of a segment's synthesis span (relative start -n_fft/2), (span,).

    1 inside the segment; outside, a raised cosine falling from 1 to 0 over ``seam_overlap`` samples
    (``None``: 1 everywhere, the "whole" method; 0: nothing outside, plain concatenation).
    """
    span = (params.n_frames - 1) * params.hop_length + params.n_fft
    position = np.arange(span) - params.n_fft // 2  # sample index relative to the segment's first sample
    if seam_overlap is None:
        return np.ones(span, dtype=dtype_name)
    outside = np.where(position < 0, -position, np.maximum(position - (params.segment_samples - 1), 0))
    if seam_overlap <= 0:
        return (outside == 0).astype(dtype_name)
    weights = np.where(outside < seam_overlap, 0.5 * (1.0 + np.cos(np.pi * outside / seam_overlap)), 0.0)
    return weights.astype(dtype_name)


def _assemble_segments(spans: np.ndarray, params: SpectrogramParams) -> np.ndarray:
    """Overlap-add synthesis spans (..., n_segments, span) placed every segment_samples: (..., n_segments * seg).

    A span starts ``n_fft / 2`` samples before its segment; what falls outside the song is dropped.
    """
    seg, pad = params.segment_samples, params.n_fft // 2
    *lead, n_segments, span = spans.shape
    out = np.zeros((*lead, pad + max(n_segments * seg, (n_segments - 1) * seg + span)), dtype=spans.dtype)
    for j in range(n_segments):  # one vectorised addition per segment (over every leading axis)
        out[..., j * seg:j * seg + span] += spans[..., j, :]
    return out[..., pad:pad + n_segments * seg]


@functools.lru_cache(maxsize=16)
def _song_inverse_norm(params: SpectrogramParams, n_segments: int, seam_overlap: Optional[int], dtype_name: str):
    """1 / sum a_j w^2, the normalisation of the weighted overlap-add over n_segments (0 where nothing covers),
    (n_segments * seg,)."""
    weights = _seam_weights(params, seam_overlap, dtype_name)
    norm = _window_square_sum(params.n_fft, params.hop_length, params.n_frames, dtype_name) * weights
    return _safe_inverse(_assemble_segments(np.broadcast_to(norm, (n_segments, norm.shape[0])).copy(), params))


def _safe_inverse(norm: np.ndarray) -> np.ndarray:
    """1 / norm where norm is above the dtype's tiny value (librosa's rule), 0 elsewhere."""
    covered = norm > np.finfo(norm.dtype).tiny
    return np.where(covered, 1.0 / np.where(covered, norm, 1), 0).astype(norm.dtype)


def _synthesise_song(stft_tf: np.ndarray, params: SpectrogramParams, seam_overlap: Optional[int]) -> np.ndarray:
    """Weighted overlap-add of every segment's frames at their true positions (module docstring).

    Args:
        stft_tf: (..., n_segments, n_frames, n_freqs) complex, frames first.
        seam_overlap: samples a segment reaches into its neighbours (None: no limit, the "whole" method).
    Returns:
        (..., n_segments * segment_samples) real waveforms.
    """
    song = _assemble_segments(_segment_spans(stft_tf, params, seam_overlap), params)
    song *= _song_inverse_norm(params, stft_tf.shape[-3], seam_overlap, song.dtype.name)
    return song


def _segment_spans(stft_tf: np.ndarray, params: SpectrogramParams, seam_overlap: Optional[int],
                   workers: int = -1) -> np.ndarray:
    """Numerators of the weighted overlap-add, per segment: (..., n_segments, n_frames, n_freqs) complex ->
    (..., n_segments, span) real, sum_k a_j w f_jk over the segment's span (it starts n_fft / 2 before it)."""
    name = np.dtype(_real_dtype(stft_tf)).name
    frames = scipy.fft.irfft(stft_tf, n=params.n_fft, axis=-1, workers=workers)
    frames *= hann_window(params.n_fft, name)
    spans = _overlap_add(frames, params.hop_length)
    spans *= _seam_weights(params, seam_overlap, name)
    return spans


# ------------------------------------------------------------------------------------------- public transforms

def stft(audio: np.ndarray, params: SpectrogramParams = SpectrogramParams()) -> np.ndarray:
    """Centred STFT of whole signals, batched over leading axes (``librosa.stft`` with ``pad_mode=params.pad_mode``).

    Args:
        audio: (..., n_samples) real waveforms (float32 gives complex64, float64 complex128).
    Returns:
        (..., n_freqs, 1 + n_samples // hop) complex STFT.
    """
    _check_params(params)
    return np.swapaxes(_analyse_signals(audio, params), -1, -2)


def istft(stft_matrix: np.ndarray, params: SpectrogramParams = SpectrogramParams(), length: int = None) -> np.ndarray:
    """Inverse of :func:`stft` (least-squares overlap-add, as ``librosa.istft(..., length=length)``), batched.

    Args:
        stft_matrix: (..., n_freqs, n_frames) complex.
        length: samples of the output (default ``(n_frames - 1) * hop``).
    Returns:
        (..., length) real waveforms (float32 for complex64 input, float64 otherwise).
    """
    _check_params(params)
    if length is None:
        length = (stft_matrix.shape[-1] - 1) * params.hop_length
    return _synthesise_signals(_to_frames_first(stft_matrix), params, int(length))


def istft_segments(stft_matrix: np.ndarray, params: SpectrogramParams = SpectrogramParams()) -> np.ndarray:
    """Exact inverse of :func:`stft_segments`, batched over segments (and any leading axis).

    Args:
        stft_matrix: (..., n_segments, n_freqs, n_frames) complex STFT of segments (n_frames = 64 by default).
    Returns:
        (..., n_segments, segment_samples) real audio; concatenate the segments and trim to the song's length.
        Each segment equals ``librosa.istft(stft, hop_length=512, length=segment_samples)``.
    """
    _check_params(params)
    if stft_matrix.shape[-1] != params.n_frames or stft_matrix.shape[-2] != params.n_freqs:
        raise UserError(f"segment STFTs must be (..., {params.n_freqs}, {params.n_frames}), got "
                        f"{tuple(stft_matrix.shape)}")
    return _synthesise_signals(_to_frames_first(stft_matrix), params, params.segment_samples)


def stft_song(audio: np.ndarray, params: SpectrogramParams = SpectrogramParams(),
              n_segments: Optional[int] = None) -> np.ndarray:
    """STFT of a song's segments with their frames taken from the whole song at their true positions.

    Frame k of segment j is centred on sample ``j * segment_samples + k * hop``. Away from a segment's borders
    this equals :func:`stft_segments` of the segmented song; the two or three frames at
    each border see the neighbouring segment's audio instead of a reflection (the song's own two ends are
    padded with ``params.pad_mode``, so for a one-segment song both are identical).

    Args:
        audio: (..., n_samples) waveforms; zero-padded to ``n_segments * segment_samples``.
        n_segments: segments to cover (default ``ceil(n_samples / segment_samples)``).
    Returns:
        (..., n_segments, n_freqs, n_frames) complex.
    """
    _check_params(params)
    audio = np.asarray(audio)
    seg = params.segment_samples
    if n_segments is None:
        n_segments = max(1, -(-audio.shape[-1] // seg))
    audio = fit_length(audio, n_segments * seg)
    return np.swapaxes(_analyse_song(audio, params, n_segments), -1, -2)


def synthesise_song(stft_matrix: np.ndarray, params: SpectrogramParams = SpectrogramParams(),
                    n_samples: Optional[int] = None, method: str = "frame",
                    seam_overlap: int = DEFAULT_SEAM_OVERLAP) -> np.ndarray:
    """A song from the complex STFT of its segments, by one weighted overlap-add of all frames (module docstring).

    Args:
        stft_matrix: (..., n_segments, n_freqs, n_frames) complex (frames at the positions of :func:`stft_song`).
        n_samples: the song's true length (default ``n_segments * segment_samples``).
        method: "frame" (each segment weighted 1 inside itself, tapered over ``seam_overlap`` samples outside) or
            "whole" (every frame weighted 1).
    Returns:
        (..., n_samples) real waveforms.
    """
    _check_params(params)
    check_choice("method", method, METHODS)
    n_segments = stft_matrix.shape[-3]
    n_samples = song_length(n_samples, n_segments, params)
    song = _synthesise_song(_to_frames_first(stft_matrix), params, None if method == "whole" else seam_overlap)
    return song[..., :n_samples]


def unit_phase(stft_matrix: np.ndarray) -> np.ndarray:
    """``X / |X|`` of a complex STFT (1 where X = 0), same shape and precision."""
    size = np.abs(stft_matrix)
    return np.where(size > 0, stft_matrix / np.where(size > 0, size, 1), 1)


# ------------------------------------------------------------------------------------------- mel -> magnitude

@functools.lru_cache(maxsize=8)
def _mel_operators(params: SpectrogramParams):
    """What the NNLS iterations need, restricted to the bins the mel filters cover (the others stay 0).

    Returns:
        (first, stop) bins covered; A and A^T as float32 CSR matrices over those bins; the dense pseudo-inverse of
        A (rows of those bins); the FISTA step 1 / ||A||_2^2.
    """
    basis = mel_filterbank(params)
    covered = np.flatnonzero(basis.any(axis=0))
    first, stop = int(covered[0]), int(covered[-1]) + 1
    step = 1.0 / np.linalg.norm(basis, 2) ** 2
    part = basis[:, first:stop].astype(np.float32)
    return (first, stop, scipy.sparse.csr_matrix(part), scipy.sparse.csr_matrix(part.T),
            np.ascontiguousarray(np.linalg.pinv(basis)[first:stop], dtype=np.float32), np.float32(step))


def _nnls_block(target: np.ndarray, n_iter: int, operators) -> np.ndarray:
    """FISTA on one block of frames: target (n_mels, n) float32 mel power -> (n_covered_bins, n) linear power."""
    _, _, basis, basis_t, pinv, step = operators
    estimate = pinv @ target                              # x: the clipped pseudo-inverse (librosa's start)
    np.maximum(estimate, 0, out=estimate)
    if n_iter <= 0:
        return estimate
    shift = basis_t @ target                              # step * A^T M
    shift *= step
    momentum_point = estimate.copy()                      # y
    t = 1.0
    for _ in range(n_iter):
        update = basis_t @ (basis @ momentum_point)       # A^T A y
        update *= -step
        update += momentum_point
        update += shift                                   # y - step * (A^T A y - A^T M)
        np.maximum(update, 0, out=update)                 # projection: the new iterate x_new
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        np.subtract(update, estimate, out=estimate)       # x_new - x, in the old x's buffer
        estimate *= np.float32((t - 1.0) / t_next)
        estimate += update                                # y_new = x_new + beta (x_new - x)
        momentum_point, estimate = estimate, update
        t = t_next
    return estimate


#: frames per NNLS block: the iterations of a block stay in the CPU caches; blocks run on parallel threads
_NNLS_BLOCK = 512


def mel_to_power(mel_power: np.ndarray, params: SpectrogramParams = SpectrogramParams(),
                 n_iter: int = DEFAULT_NNLS_ITER) -> np.ndarray:
    """Linear STFT power from mel power by non-negative least squares, every frame at once.

    Solves ``min_{P >= 0} ||A P - M||_F^2`` (A: librosa's Slaney mel filters of ``params``) with FISTA (accelerated
    projected gradient, step 1 / ||A||_2^2), starting from the clipped pseudo-inverse like ``librosa.util.nnls``.
    The problem is separable per frame: all frames form one (n_freqs, n_frames_total) matrix, cut into blocks of
    512 frames that are iterated on parallel threads (sparse products and in-place numpy operations release the
    GIL); the momentum sequence is the same for every frame, so blocks change nothing in the result.

    Args:
        mel_power: (..., n_mels, n_frames) mel **power** (not dB), non-negative.
        n_iter: FISTA iterations (0: the clipped pseudo-inverse).
    Returns:
        (..., n_freqs, n_frames) float32 linear power |STFT|^2, >= 0 (bins outside [fmin, fmax] are 0).
    """
    mel_power = np.asarray(mel_power)
    if mel_power.ndim < 2 or mel_power.shape[-2] != params.n_mels:
        raise UserError(f"mel spectrograms must be (..., {params.n_mels}, n_frames), got {tuple(mel_power.shape)}")
    operators = _mel_operators(params)
    first, stop = operators[:2]
    lead, n_frames = mel_power.shape[:-2], mel_power.shape[-1]
    target = np.ascontiguousarray(np.moveaxis(mel_power.astype(np.float32), -2, 0).reshape(params.n_mels, -1))
    blocks = [target[:, i:i + _NNLS_BLOCK] for i in range(0, target.shape[1], _NNLS_BLOCK)]
    workers = min(len(blocks), os.cpu_count() or 1, 8)
    if workers > 1:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            solved = list(pool.map(lambda block: _nnls_block(block, n_iter, operators), blocks))
    else:
        solved = [_nnls_block(block, n_iter, operators) for block in blocks]
    power = np.zeros((params.n_freqs, target.shape[1]), dtype=np.float32)
    power[first:stop] = np.concatenate(solved, axis=1)
    power = power.reshape(params.n_freqs, *lead, n_frames)
    return np.ascontiguousarray(np.moveaxis(power, 0, -2))


def mel_to_magnitude(mel_power: np.ndarray, params: SpectrogramParams = SpectrogramParams(),
                     n_iter: int = DEFAULT_NNLS_ITER) -> np.ndarray:
    """Linear STFT magnitude from mel power: sqrt of :func:`mel_to_power` (``librosa...mel_to_stft`` with power 2).

    Args:
        mel_power: (..., n_mels, n_frames) mel power (convert dB with :func:`db_to_power`).
    Returns:
        (..., n_freqs, n_frames) float32 linear magnitude |STFT|.
    """
    return np.sqrt(mel_to_power(mel_power, params, n_iter))


#: segments per Griffin-Lim block in the "frame" method: a block's iterations stay in the CPU caches, blocks run
#: on parallel threads (scipy.fft and numpy's array operations release the GIL)
_GL_BLOCK = 4


def _griffin_lim_loop(magnitude_tf: np.ndarray, angles: np.ndarray, synthesise, analyse, n_iter: int,
                      momentum: float) -> np.ndarray:
    """Fast Griffin-Lim iterations (librosa's scheme) from unit phases ``angles``; returns the complex frames."""
    dtype = _real_dtype(magnitude_tf)
    eps = np.finfo(dtype).tiny
    spec = magnitude_tf * angles
    previous = None
    for _ in range(n_iter):
        rebuilt = analyse(synthesise(spec))
        if previous is None:
            spec = rebuilt.copy()
        else:  # accelerated step: rebuilt - momentum / (1 + momentum) * previous
            np.multiply(previous, dtype(momentum / (1.0 + momentum)), out=spec)
            np.subtract(rebuilt, spec, out=spec)
        scale = np.abs(spec)
        scale += eps
        np.divide(magnitude_tf, scale, out=scale)    # |s| / |angles|: the new phase with the given magnitude
        spec *= scale
        previous = rebuilt
    return spec


def _griffin_lim_tf(magnitude_tf: np.ndarray, params: SpectrogramParams, method: str, n_iter: int,
                    momentum: float, seed: Optional[int], init_tf: Optional[np.ndarray] = None) -> np.ndarray:
    """Fast Griffin-Lim on frames-first magnitudes (..., n_segments, n_frames, n_freqs); returns complex frames.

    "frame": every segment on its own, in blocks of segments on parallel threads; "whole": the whole song.
    ``init_tf``: complex frames whose phase starts the iterations (broadcast to the magnitudes); random if None.
    """
    dtype = _real_dtype(magnitude_tf)
    if init_tf is None:
        rng = np.random.default_rng(seed)
        angles = np.exp(2j * np.pi * rng.random(magnitude_tf.shape)).astype(_complex_dtype(dtype))
    else:
        angles = np.broadcast_to(unit_phase(init_tf), magnitude_tf.shape)
        angles = angles.astype(_complex_dtype(dtype))
    if method == "whole":
        return _griffin_lim_whole(magnitude_tf, angles, params, n_iter, momentum)
    seg = params.segment_samples
    flat_magnitude = magnitude_tf.reshape(-1, *magnitude_tf.shape[-2:])
    flat_angles = angles.reshape(flat_magnitude.shape)
    starts = range(0, flat_magnitude.shape[0], _GL_BLOCK)
    workers = min(len(starts), os.cpu_count() or 1, 8)

    def block(start: int) -> np.ndarray:
        fft_workers = 1 if workers > 1 else -1
        return _griffin_lim_loop(flat_magnitude[start:start + _GL_BLOCK], flat_angles[start:start + _GL_BLOCK],
                                 lambda spec: _synthesise_signals(spec, params, seg, fft_workers),
                                 lambda audio: _analyse_signals(audio, params, fft_workers), n_iter, momentum)

    if workers > 1:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            blocks = list(pool.map(block, starts))
    else:
        blocks = [block(start) for start in starts]
    return np.concatenate(blocks).reshape(magnitude_tf.shape)


def _griffin_lim_whole(magnitude_tf: np.ndarray, angles: np.ndarray, params: SpectrogramParams, n_iter: int,
                       momentum: float) -> np.ndarray:
    """Fast Griffin-Lim on the whole song: each iteration synthesises the song from every segment's frames and
    re-analyses it at the same positions. Both halves run on blocks of segments on parallel threads."""
    dtype = _real_dtype(magnitude_tf)
    eps = np.finfo(dtype).tiny
    n_segments = magnitude_tf.shape[-3]
    blocks = [slice(j, j + _GL_BLOCK) for j in range(0, n_segments, _GL_BLOCK)]
    workers = min(len(blocks), os.cpu_count() or 1, 8)
    fft_workers = 1 if workers > 1 else -1
    window = hann_window(params.n_fft, np.dtype(dtype).name)
    inverse_norm = _song_inverse_norm(params, n_segments, None, np.dtype(dtype).name)
    factor = dtype(momentum / (1.0 + momentum))
    spec = magnitude_tf * angles
    previous = np.empty_like(spec)
    state = {"first": True, "frames": None}

    def synthesise(block: slice) -> np.ndarray:
        return _segment_spans(spec[..., block, :, :], params, None, fft_workers)

    def update(block: slice) -> None:  # re-analysis, momentum and new phase of the block's segments, in place
        rebuilt = scipy.fft.rfft(state["frames"][..., block, :, :] * window, axis=-1, workers=fft_workers)
        part, before = spec[..., block, :, :], previous[..., block, :, :]
        if state["first"]:
            part[...] = rebuilt
        else:
            np.multiply(before, factor, out=part)
            np.subtract(rebuilt, part, out=part)
        scale = np.abs(part)
        scale += eps
        np.divide(magnitude_tf[..., block, :, :], scale, out=scale)
        part *= scale
        before[...] = rebuilt

    pool = concurrent.futures.ThreadPoolExecutor(workers) if workers > 1 else None
    run = pool.map if pool is not None else map
    try:
        for _ in range(n_iter):
            spans = np.concatenate(list(run(synthesise, blocks)), axis=-2)
            song = _assemble_segments(spans, params)
            song *= inverse_norm
            state["frames"] = _song_frames(song, params, n_segments)
            list(run(update, blocks))
            state["first"] = False
    finally:
        if pool is not None:
            pool.shutdown()
    return spec


def griffin_lim(magnitude: np.ndarray, params: SpectrogramParams = SpectrogramParams(), method: str = "frame",
                n_iter: int = DEFAULT_GL_ITER, momentum: float = DEFAULT_MOMENTUM, seed: Optional[int] = 0,
                init_phase: Optional[np.ndarray] = None) -> np.ndarray:
    """Fast Griffin-Lim phase retrieval, batched over segments and any leading axis.

    Each iteration synthesises audio from ``magnitude * phase`` (least-squares overlap-add), re-analyses it, and
    keeps the new phase with librosa's momentum (``momentum=0`` is the original Griffin-Lim). Starts from random
    phase (``seed``, as librosa) or from the phase of ``init_phase``.

    Args:
        magnitude: (..., n_segments, n_freqs, n_frames) linear magnitude; float32 runs in single precision.
        method: "frame" -- each segment on its own, padded as ``stft_segments`` pads it (the seed's per-segment
            ``librosa.griffinlim``); "whole" -- the whole song, frames at their true positions (phase continuous
            across segments).
        init_phase: optional complex STFT (broadcast to ``magnitude``, e.g. the mixture's :func:`stft_song`) whose
            phase starts the iterations.
    Returns:
        (..., n_segments, n_freqs, n_frames) complex STFT with the given magnitude and the retrieved phase; turn it
        into audio with :func:`synthesise_song` (any method) or :func:`istft_segments` ("frame").
    """
    _check_params(params)
    check_choice("method", method, METHODS)
    if magnitude.ndim < 3:
        raise UserError(f"magnitudes must be (..., n_segments, n_freqs, n_frames), got {tuple(magnitude.shape)}")
    init_tf = None if init_phase is None else _to_frames_first(np.asarray(init_phase))
    return np.swapaxes(_griffin_lim_tf(_to_frames_first(magnitude), params, method, n_iter, momentum, seed, init_tf),
                       -1, -2)


def mel_to_audio(mel: np.ndarray, params: SpectrogramParams = SpectrogramParams(), scale: str = "dB",
                 n_iter: int = DEFAULT_GL_ITER, method: str = "frame", seed: Optional[int] = 0) -> np.ndarray:
    """Listenable audio of mel spectrograms with no mixture: NNLS, Griffin-Lim from random phase, synthesis.

    What training and sampling scripts use to put generated spectrograms in TensorBoard or a wav file (a
    separation's inversion recipes, which use the mixture, are :func:`separation.inversion.invert_mel`).

    Args:
        mel: (..., n_segments, n_mels, n_frames) in dB (``scale="dB"``) or mel power (``scale="power"``).
    Returns:
        (..., n_segments * segment_samples) float32 audio.
    """
    check_choice("scale", scale, SCALES)
    power = db_to_power(mel) if scale == "dB" else np.asarray(mel, dtype=np.float64)
    spec = griffin_lim(mel_to_magnitude(power, params), params, method, n_iter, seed=seed)
    return np.ascontiguousarray(synthesise_song(spec.astype(np.complex64, copy=False), params, method=method),
                                dtype=np.float32)


def check_choice(name: str, value: str, choices) -> None:
    """UserError naming the choices unless ``value`` is one of them."""
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def song_length(n_samples: Optional[int], n_segments: int, params: SpectrogramParams) -> int:
    """A song's true length in samples, checked to fit ``n_segments`` segments (default: all of them)."""
    total = n_segments * params.segment_samples
    if n_samples is None:
        return total
    n_samples = int(n_samples)
    if not 0 < n_samples <= total:
        raise UserError(f"n_samples = {n_samples} does not fit {n_segments} segments of "
                        f"{params.segment_samples} samples (at most {total})")
    return n_samples


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad or cut the last axis to ``length``."""
    if audio.shape[-1] >= length:
        return audio[..., :length]
    return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, length - audio.shape[-1])])

