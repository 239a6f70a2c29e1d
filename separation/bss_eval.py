"""BSS Eval v4: framewise SDR, ISR, SIR and SAR of separated sources, as ``museval`` 0.4.1 computes them.

The suite's BSS Eval library (``bss_eval_v4.py`` is its command line). :func:`bss_eval` has the signature,
defaults, input shapes and outputs of ``museval.metrics.bss_eval`` and agrees with it within 0.01 dB (NaN where
museval gives NaN); :func:`evaluate` mirrors ``museval.evaluate`` (1 s windows and hop by default, estimates padded
or trimmed to the references' length). :class:`Scores`, the suite's one score class, holds the framewise scores of
one track and writes them as JSON in museval's layout or as CSV; :func:`aggregate` gives the field's summary
(median over frames per track, then median over tracks). Metrics are always in :data:`METRICS` order.

How it is computed (same mathematics as museval, organised to be fast; float64 throughout):

* v4: the distortion filters (``filters_len`` taps, every reference channel to every estimate channel) are
  least-squares projections of each estimate on the delayed references of the whole track. The correlations they
  need are computed once, for all signal pairs, by block FFTs; the block-Toeplitz normal equations are solved once
  for all estimates with a Cholesky factorisation (museval solves them once per estimate with LU).
  Where the windows tile the signal (hop = window, as in ``evaluate``), those correlations come from the windows'
  own spectra, which the scores need anyway, plus one small FFT per window boundary for the products across it.
* each window is then projected: the window's references are convolved with the filters in the frequency domain,
  all windows of a chunk and all sources at once (the chunks on two threads) and a cache-sized block of frequencies
  at a time (fresh memory is what a first call pays most for), and the energies of the error terms are summed
  with Parseval's identity. Windows too long for that within a fixed memory budget (a whole track) are
  filtered block by block (overlap-add) and their energies summed in the time domain.
* a window where a reference or an estimate is silent (its channel sum is zero on every sample of the window) is
  NaN for every source; the permutation (``compute_permutation=True``) is chosen once for the whole track from the
  mean SIR, exactly as museval does (a single NaN window makes that mean NaN, and museval then keeps the identity).
* BLAS runs on one thread during the call (see :func:`_single_threaded_blas`); the FFTs use every core, and the
  window chunks and the normal equations run on threads of their own.

Where it differs from museval:

* where museval's result is set by rounding errors, the two differ: values above about 100 dB (an estimate equal
  to its reference: museval and this module both give ``inf`` SDR, and 250-320 dB ISR/SIR/SAR that differ), and
  references whose delayed copies are numerically linearly dependent (exactly band-limited signals, stereo
  channels that are exact filtered copies of each other, a noise floor below about -140 dB), for which the
  filters are ill-determined in both implementations. Elsewhere the two agree to about 1e-10 dB.
* inputs museval rejects raise :class:`BSSEvalInputError` (a ``ValueError``) with a message that names the
  problem; ``evaluate`` pads or cuts estimates of another length as museval does, but says so on stderr.
* with ``framewise_filters`` (v3), no filters are estimated in silent windows (museval estimates and discards them).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import itertools
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

import numpy as np
import scipy.fft
import scipy.linalg

from core.errors import UserError, warn

if TYPE_CHECKING:
    import pandas as pd

MAX_SOURCES = 100
"""Largest number of sources accepted (museval's ``MAX_SOURCES``)."""

#: the metrics, in museval's return order; every table, file and dict of the suite uses this order
METRICS = ("SDR", "ISR", "SIR", "SAR")
#: the file names of a folder's scores
JSON_NAME = "metrics.json"
CSV_NAME = "metrics.csv"

_CHUNK_BYTES = 96 * 2**20  # memory for the spectra of one chunk of windows
_CORRELATION_FFT = 16384  # FFT length of the blocks used for the correlations
_LONG_BLOCK_FFT = 32768  # FFT length of the blocks used to filter windows too long for one FFT
_FREQUENCY_BLOCK_BYTES = 2**20  # working set of a block of frequencies in the window scores (cache-sized)
_WORKERS = os.cpu_count() or 1


class BSSEvalInputError(UserError, ValueError):
    """Inputs that BSS Eval cannot score (museval raises ``ValueError`` for these; scripts show one line)."""


# ----------------------------------------------------------------------------------------------------- framing
def frame_bounds(window: float, hop: float, n_samples: int) -> list[tuple[int, int]]:
    """The windows museval evaluates, as ``(start, stop)`` sample indices.

    Args:
        window: window length in samples (``np.inf`` or anything >= ``n_samples``: one window, the whole signal).
        hop: hop between window starts, in samples (may be a float: starts are floored).
        n_samples: signal length in samples.
    Returns:
        ``nwin`` pairs; ``nwin = floor((n_samples - window + hop) / hop)`` when ``window < n_samples``, else 1.
    """
    n_windows = int(np.floor((n_samples - window + hop) / hop)) if window < n_samples else 1
    bounds = []
    for index in range(n_windows):
        start = index * hop
        stop = min(index * hop + window, n_samples)
        start = 0 if (np.isnan(start) or np.isinf(start)) else start
        stop = n_samples if (np.isnan(stop) or np.isinf(stop)) else stop
        bounds.append((int(np.floor(start)), int(np.floor(stop))))
    return bounds


def _silent_windows(nonzero: np.ndarray, bounds: Sequence[tuple[int, int]]) -> np.ndarray:
    """Windows in which at least one source is silent.

    Args:
        nonzero: (n_sources, n_samples) bool, True where a source's channel sum is not 0 (museval's test).
        bounds: windows as (start, stop) sample indices.
    Returns:
        (n_windows,) bool.
    """
    return np.array([not np.all(np.any(nonzero[:, start:stop], axis=1)) for start, stop in bounds], dtype=bool)


# ------------------------------------------------------------------------------------- distortion filters
def _channel_rows(target: np.ndarray, sources: np.ndarray, start: int, stop: int) -> None:
    """Copy ``sources[:, start:stop, :]`` into ``target[:, :stop - start]``, one row per (source, channel).

    Args:
        target: (n_sources * n_channels, length) float64 view (its first axis can be split without a copy).
        sources: (n_sources, n_samples, n_channels), any real dtype (cast to float64 here).
    """
    n_sources, _, n_channels = sources.shape
    target.reshape(n_sources, n_channels, -1)[:, :, :stop - start] = sources[:, start:stop, :].transpose(0, 2, 1)


def _cross_correlations(blocked: np.ndarray, extended: Sequence[np.ndarray], n_lags: int) -> np.ndarray:
    """Linear cross-correlations of every row of ``blocked`` with every row of ``extended`` at small lags.

    ``result[a, b, n_lags - 1 + k] = sum_m x_a[m] * y_b[m + k]`` for ``|k| < n_lags`` (samples outside the
    signals count as zeros), with ``x_a`` the channels of ``blocked`` and ``y_b`` those of ``extended``. The sum over
    ``m`` is cut into blocks; each block's cross-spectrum is accumulated in the frequency domain (a batched matrix
    product over frequencies) and a single inverse FFT per
    pair gives the lags, so the cost grows like ``n_samples * n_a * n_b`` rather than with one long FFT per pair,
    and only a group of blocks is held in memory at a time.

    Args:
        blocked: (n_sources, n_samples, n_channels): its n_a = n_sources * n_channels channels, source-major.
        extended: arrays (n_sources_i, n_samples, n_channels_i) whose channels, one after the other, are the n_b
            signals.
        n_lags: number of non-negative lags (the filter length).
    Returns:
        (n_a, n_b, 2 * n_lags - 1) float64.
    """
    n_samples = blocked.shape[1]
    n_a = blocked.shape[0] * blocked.shape[2]
    n_b = sum(part.shape[0] * part.shape[2] for part in extended)
    pad = n_lags - 1
    n_fft = max(_CORRELATION_FFT, scipy.fft.next_fast_len(4 * n_lags, real=True))
    block = n_fft - 2 * pad
    if n_samples <= block:
        block = n_samples
        n_fft = scipy.fft.next_fast_len(n_samples + 2 * pad, real=True)
    n_blocks = -(-n_samples // block)
    n_freqs = n_fft // 2 + 1
    spectrum = np.zeros((n_freqs, n_a, n_b), dtype=np.complex128)
    group = max(1, _CHUNK_BYTES // (24 * n_fft * (n_a + n_b)))  # frames and their spectra
    for first in range(0, n_blocks, group):
        last = min(first + group, n_blocks)
        # zero-padded to n_fft here: rfft(..., n=n_fft) would copy them once more
        frames_a = np.zeros((n_a, last - first, n_fft))  # block i: samples [i * block, (i + 1) * block)
        frames_b = np.zeros((n_b, last - first, n_fft))  # the same, with pad samples either side
        for i in range(first, last):
            start, stop = i * block, min((i + 1) * block, n_samples)
            _channel_rows(frames_a[:, i - first], blocked, start, stop)
            ext_start, ext_stop = max(start - pad, 0), min(stop + pad, n_samples)
            offset = ext_start - (start - pad)
            row = 0
            for part in extended:
                rows = part.shape[0] * part.shape[2]
                _channel_rows(frames_b[row:row + rows, i - first, offset:], part, ext_start, ext_stop)
                row += rows
        spec_a = scipy.fft.rfft(frames_a, axis=-1, workers=_WORKERS)  # (n_a, g, F)
        spec_b = scipy.fft.rfft(frames_b, axis=-1, workers=_WORKERS)  # (n_b, g, F)
        del frames_a, frames_b
        spectrum += np.matmul(np.conj(spec_a).transpose(2, 0, 1), spec_b.transpose(2, 1, 0))
    correlation = scipy.fft.irfft(spectrum, n=n_fft, axis=0, workers=_WORKERS)[:2 * pad + 1]
    return np.ascontiguousarray(correlation.transpose(1, 2, 0))


def _window_fft_len(bounds: Sequence[tuple[int, int]], filters_len: int) -> int:
    """The FFT length at which the windows ``bounds``, filtered by ``filters_len`` taps, do not wrap around."""
    return scipy.fft.next_fast_len(max(stop - start for start, stop in bounds) + filters_len - 1, real=True)


def _window_spectra(references: np.ndarray, estimates: np.ndarray, bounds: Sequence[tuple[int, int]],
                    n_fft: int, workers: int = _WORKERS) -> np.ndarray:
    """Half spectra of the windows of the references and the estimates, each zero-padded to ``n_fft``.

    Returns:
        (n_windows, 2, n_ref, F) complex128, F = n_fft // 2 + 1: [:, 0] the references' channels, [:, 1] the
        estimates', source-major.
    """
    n_ref = references.shape[0] * references.shape[2]
    frames = np.zeros((len(bounds), 2, n_ref, n_fft))  # zero-padded here: rfft(..., n=n_fft) would copy again
    for t, (start, stop) in enumerate(bounds):
        _channel_rows(frames[t, 0], references, start, stop)
        _channel_rows(frames[t, 1], estimates, start, stop)
    return scipy.fft.rfft(frames, axis=-1, workers=workers)


def _tiled_spectra(references: np.ndarray, estimates: np.ndarray, bounds: Sequence[tuple[int, int]],
                   filters_len: int, layout: "_Pairs") -> Optional[tuple[np.ndarray, list[tuple[int, int]], int]]:
    """The spectra of the windows and of the rest of the signal, when the windows tile it: shared by the
    correlations of the distortion filters (:func:`_tiled_correlations`) and the window scores.

    Applies when the windows follow each other without gap or overlap from sample 0 (hop = window, museval's
    ``evaluate``), are at least ``filters_len - 1`` samples long, are scored in the frequency domain
    (:func:`_short_window_scores`, within the memory budget for ``layout``), and the spectra of all of them fit in
    the budget too; the samples after the last window, if any, are one more block. Checked before any FFT.

    Returns:
        ``(spectra, blocks, n_fft)``: (n_blocks, 2, n_ref, F) as :func:`_window_spectra` at the window scores' FFT
        length n_fft (the first ``len(bounds)`` blocks are the windows), and the blocks' (start, stop); or None.
    """
    n_samples, n_ref = references.shape[1], references.shape[0] * references.shape[2]
    blocks = list(bounds)
    if blocks[0][0] != 0 or any(stop != start for (_, stop), (start, _) in zip(blocks, blocks[1:])):
        return None
    if min(stop - start for start, stop in blocks) < filters_len - 1 or len(blocks) < 2:
        return None
    if blocks[-1][1] < n_samples:
        blocks.append((blocks[-1][1], n_samples))
    n_fft = _window_fft_len(bounds, filters_len)
    if (_spectral_bytes(layout, n_fft) > _CHUNK_BYTES
            or 16 * len(blocks) * 2 * n_ref * (n_fft // 2 + 1) > _CHUNK_BYTES):
        return None
    return _window_spectra(references, estimates, blocks, n_fft), blocks, n_fft


def _tiled_correlations(references: np.ndarray, estimates: np.ndarray, spectra: np.ndarray,
                        blocks: Sequence[tuple[int, int]], n_fft: int, n_lags: int) -> np.ndarray:
    """:func:`_cross_correlations` of the references with the references and the estimates, from the spectra of
    blocks that tile the signals (:func:`_tiled_spectra`).

    A correlation at lag |k| < n_lags sums products of samples in the same block, whose circular correlation at
    the blocks' FFT length has no wrap-around there (n_fft >= block + n_lags - 1), and of samples on either side of
    a boundary between two blocks (every block but the last is at least n_lags - 1 long, so no lag skips one): the
    last n_lags - 1 samples before it with the first n_lags - 1 after it, one small FFT per boundary.

    Args:
        spectra: (n_blocks, 2, n_ref, F) of the blocks at FFT length n_fft, with F = n_fft // 2 + 1.
    Returns:
        (n_ref, 2 * n_ref, 2 * n_lags - 1) float64, as :func:`_cross_correlations`.
    """
    n_blocks, _, n_ref, n_freqs = spectra.shape
    pad = n_lags - 1
    signals = spectra.reshape(n_blocks, 2 * n_ref, n_freqs)
    # the sum over blocks of the cross-spectra, (F, n_ref, 2 n_ref): for a few channels einsum's loop (contiguous
    # along frequency) beats a batched product of matrices this small, for more the batched product wins
    if n_ref <= 2:
        cross = np.einsum("taf,tbf->fab", np.conj(spectra[:, 0]), signals)
    else:
        cross = np.matmul(np.conj(spectra[:, 0]).transpose(2, 1, 0), signals.transpose(2, 0, 1))
    correlation = scipy.fft.irfft(cross, n=n_fft, axis=0, workers=_WORKERS)
    correlation = np.concatenate([correlation[n_fft - pad:], correlation[:pad + 1]])  # lags -pad .. pad

    boundaries = [stop for _, stop in blocks[:-1]]
    seam_fft = scipy.fft.next_fast_len(3 * pad, real=True)
    seams = np.zeros((2, len(boundaries), 2, n_ref, seam_fft))  # [before | after the boundary], then zeros
    for i, boundary in enumerate(boundaries):
        for kind, signal in enumerate((references, estimates)):
            _channel_rows(seams[0, i, kind], signal, boundary - pad, boundary)
            after = min(boundary + pad, signal.shape[1])
            _channel_rows(seams[1, i, kind, :, pad:], signal, boundary, after)
    seam_spectra = scipy.fft.rfft(seams, axis=-1, workers=_WORKERS).reshape(2, len(boundaries), 2 * n_ref, -1)
    before, after = seam_spectra[0].transpose(2, 0, 1), seam_spectra[1].transpose(2, 0, 1)  # (F', seams, rows)
    seam_cross = (np.matmul(np.conj(before[:, :, :n_ref]).transpose(0, 2, 1), after)
                  + np.matmul(np.conj(after[:, :, :n_ref]).transpose(0, 2, 1), before))
    seam_correlation = scipy.fft.irfft(seam_cross, n=seam_fft, axis=0, workers=_WORKERS)
    correlation += np.concatenate([seam_correlation[seam_fft - pad:], seam_correlation[:pad + 1]])
    return np.ascontiguousarray(correlation.transpose(1, 2, 0))


def _gram_matrix(correlations: np.ndarray, filters_len: int) -> np.ndarray:
    """Gram matrix of delayed signals from their correlations.

    Args:
        correlations: (n, n, 2 * filters_len - 1), as :func:`_cross_correlations` of the signals with themselves.
    Returns:
        (n * filters_len, n * filters_len) float64; entry ``((a, p), (b, q))`` is the inner product of signal ``a``
        delayed by ``p`` samples with signal ``b`` delayed by ``q``, i.e. ``correlations[a, b, L - 1 + p - q]``.
    """
    n_signals, size = correlations.shape[0], filters_len
    gram = np.empty((n_signals * size, n_signals * size))
    for a, b in itertools.product(range(n_signals), repeat=2):
        # block (a, b) is Toeplitz: a read-only view with entry (p, q) at lags[L - 1 + p - q], copied once
        lags = correlations[a, b]
        step = lags.strides[0]
        gram[a * size:(a + 1) * size, b * size:(b + 1) * size] = np.lib.stride_tricks.as_strided(
            lags[size - 1:], shape=(size, size), strides=(step, -step), writeable=False)
    return gram


def _solve_filters(correlations_rr: np.ndarray, rhs: np.ndarray, filters_len: int) -> np.ndarray:
    """Least-squares filters on the delayed references: solve ``(G + eps I) x = rhs`` as museval does.

    ``G`` is the Gram matrix of the delayed references (:func:`_gram_matrix`). museval calls ``np.linalg.solve``
    (LU) and, if that reports a singular matrix, ``np.linalg.lstsq(G, rhs)``; ``G`` is symmetric positive
    (semi-)definite, so a Cholesky factorisation gives the same solution at half the cost. Where rounding makes it
    fail (a numerically rank-deficient ``G``), museval's own route is taken.

    Args:
        correlations_rr: (n, n, 2 * filters_len - 1) correlations of the n reference signals.
        rhs: (n * filters_len, m) float64.
    Returns:
        (n * filters_len, m) float64.
    """
    eps = np.finfo(float).eps
    gram = _gram_matrix(correlations_rr, filters_len)
    gram[np.diag_indices_from(gram)] += eps
    try:
        # gram is symmetric: its transpose is the same matrix, in the Fortran order LAPACK factorises in place
        factor = scipy.linalg.cho_factor(gram.T, lower=True, overwrite_a=True, check_finite=False)
        return scipy.linalg.cho_solve(factor, rhs, check_finite=False)
    except np.linalg.LinAlgError:
        pass
    gram = _gram_matrix(correlations_rr, filters_len)  # the factorisation overwrote it
    try:
        return np.linalg.solve(gram + eps * np.eye(gram.shape[0]), rhs)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(gram, rhs, rcond=None)[0]


def _distortion_filters(references: np.ndarray, estimates: np.ndarray, filters_len: int,
                        pairs: Sequence[tuple[int, int]], correlations: Optional[np.ndarray] = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The distortion filters of BSS Eval, estimated on the given signals.

    Args:
        references: (n_sources, n_samples, n_channels) float64.
        estimates: (n_sources, n_samples, n_channels) float64.
        filters_len: filter length in samples (taps).
        pairs: the (true source, estimate) pairs that need a single-source filter.
        correlations: the references' correlations with the references and the estimates, if computed already
            (:func:`_tiled_correlations`); by default :func:`_cross_correlations`.
    Returns:
        ``filters_all``: (n_estimates, n_sources, n_channels_in, filters_len, n_channels_out): estimate ``e`` as
        filtered references of all sources (museval's ``C[e]``);
        ``filters_pair``: (n_pairs, n_channels_in, filters_len, n_channels_out): estimate ``pairs[p][1]`` as the
        filtered reference of source ``pairs[p][0]`` alone (museval's ``Cj[j, e]``).
    """
    n_sources, _, n_channels = references.shape
    n_ref = n_sources * n_channels
    if correlations is None:
        correlations = _cross_correlations(references, [references, estimates], filters_len)
    corr_rr = correlations[:, :n_ref]  # (n_ref, n_ref, 2L - 1)
    # rhs[(a, p), (e, c)] = <reference a delayed by p, estimate e channel c> = correlation at lag +p
    corr_re = correlations[:, n_ref:, filters_len - 1:]  # (n_ref, n_est_signals, L)
    rhs = np.ascontiguousarray(corr_re.transpose(0, 2, 1).reshape(n_ref * filters_len, n_ref))

    # the all-sources system and one per source, solved side by side (LAPACK releases the GIL; BLAS is on one
    # thread, see _single_threaded_blas)
    with concurrent.futures.ThreadPoolExecutor(_WORKERS) as pool:
        solution = pool.submit(_solve_filters, corr_rr, rhs, filters_len)
        singles = {}
        for source in sorted({j for j, _ in pairs}):
            rows = slice(source * n_channels, (source + 1) * n_channels)
            wanted = [(p, e) for p, (j, e) in enumerate(pairs) if j == source]
            columns = np.concatenate([np.arange(e * n_channels, (e + 1) * n_channels) for _, e in wanted])
            rhs_j = rhs.reshape(n_sources, n_channels * filters_len, n_ref)[source][:, columns]
            singles[source] = wanted, pool.submit(_solve_filters, corr_rr[rows, rows], rhs_j, filters_len)
        solution = solution.result()
        filters_pair = np.empty((len(pairs), n_channels, filters_len, n_channels))
        for wanted, solved in singles.values():
            solution_j = solved.result().reshape(n_channels, filters_len, len(wanted), n_channels)
            for k, (p, _) in enumerate(wanted):
                filters_pair[p] = solution_j[:, :, k]
    filters_all = solution.reshape(n_sources, n_channels, filters_len, n_sources, n_channels).transpose(3, 0, 1, 2, 4)
    return np.ascontiguousarray(filters_all), filters_pair


# ----------------------------------------------------------------------------------------- window scores
@dataclasses.dataclass(frozen=True)
class _Pairs:
    """Where each (true source j, estimate e) pair finds its signals among the channels.

    Columns count channels: reference/estimate signal ``s * n_channels + c`` is channel ``c`` of source ``s``, and
    one filtered output per (pair, output channel). Consecutive columns become slices (views, not copies).
    """

    pairs: tuple[tuple[int, int], ...]
    n_sources: int
    n_channels: int

    @property
    def n_ref(self) -> int:
        return self.n_sources * self.n_channels

    @property
    def n_out(self) -> int:
        return len(self.pairs) * self.n_channels

    @property
    def true_columns(self) -> slice | np.ndarray:
        return _as_slice([j * self.n_channels + c for j, _ in self.pairs for c in range(self.n_channels)])

    @property
    def est_columns(self) -> slice | np.ndarray:
        return _as_slice([e * self.n_channels + c for _, e in self.pairs for c in range(self.n_channels)])


def _as_slice(columns: Sequence[int]) -> slice | np.ndarray:
    """``columns`` as a slice when they are consecutive (a view instead of a copy), else as an index array."""
    if list(columns) == list(range(columns[0], columns[0] + len(columns))):
        return slice(columns[0], columns[0] + len(columns))
    return np.asarray(columns)


def _db(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``10 log10(numerator / denominator)``, +inf where the denominator is 0 (museval's ``_safe_db``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = 10 * np.log10(numerator / denominator)
    return np.where(denominator == 0, np.inf, ratio)


def _criteria(energies: np.ndarray, bsseval_sources_version: bool) -> np.ndarray:
    """SDR, ISR, SIR, SAR from the energies of the decomposition.

    With ``S`` the true source image, ``Pj`` its filtered version (``S + e_spat``), ``Pa`` all references filtered
    (``Pj + e_interf``) and ``E`` the estimate (``Pa + e_artif``): SDR = |S|^2/|E - S|^2, ISR = |S|^2/|Pj - S|^2,
    SIR = |Pj|^2/|Pa - Pj|^2, SAR = |Pa|^2/|E - Pa|^2; bss_eval_sources version: SDR = |Pj|^2/|E - Pj|^2, no ISR.

    Args:
        energies: (7, ..., n_pairs): |S|^2, |E - S|^2 (|E - Pj|^2 in the sources version), |Pj - S|^2, |Pj|^2,
            |Pa - Pj|^2, |Pa|^2, |E - Pa|^2.
    Returns:
        (4, ..., n_pairs) in dB.
    """
    true, err_true, err_spat, pair, err_interf, proj_all, err_artif = energies
    if bsseval_sources_version:
        sdr = _db(pair, err_true)
        isr = np.full_like(sdr, np.nan)
    else:
        sdr = _db(true, err_true)
        isr = _db(true, err_spat)
    return np.stack([sdr, isr, _db(pair, err_interf), _db(proj_all, err_artif)])


def _mixing(filters_all: np.ndarray, filters_pair: np.ndarray, layout: _Pairs, n_fft: int) -> np.ndarray:
    """Per frequency, the matrix taking the references' spectra to the filtered signals' spectra.

    Returns:
        (F, n_ref, n_ref + n_out) complex128, F = n_fft // 2 + 1. Columns [0, n_ref): all references filtered
        towards estimate e, channel c (``Pa``, museval's ``C[e]``); then one column per (pair, output channel): the
        pair's true source filtered alone (``Pj``, museval's ``Cj``).
    """
    n_ref, n_channels = layout.n_ref, layout.n_channels
    n_freqs = n_fft // 2 + 1
    spec_all = scipy.fft.rfft(filters_all, n=n_fft, axis=3, workers=_WORKERS)  # (E, S, Ci, F, Co)
    mixing = np.zeros((n_freqs, n_ref, n_ref + layout.n_out), dtype=np.complex128)
    mixing[:, :, :n_ref] = spec_all.transpose(3, 1, 2, 0, 4).reshape(n_freqs, n_ref, n_ref)
    del spec_all
    spec_pair = scipy.fft.rfft(filters_pair, n=n_fft, axis=2, workers=_WORKERS)  # (P, Ci, F, Co)
    for p, (j, _) in enumerate(layout.pairs):
        rows = slice(j * n_channels, (j + 1) * n_channels)
        mixing[:, rows, n_ref + p * n_channels:n_ref + (p + 1) * n_channels] = spec_pair[p].transpose(1, 0, 2)
    return mixing


def _window_scores(references: np.ndarray, estimates: np.ndarray, bounds: Sequence[tuple[int, int]],
                   filters_all: np.ndarray, filters_pair: np.ndarray, pairs: Sequence[tuple[int, int]],
                   bsseval_sources_version: bool) -> np.ndarray:
    """SDR, ISR, SIR and SAR of each pair in each window, with fixed distortion filters.

    In a window ``[start, stop)`` the references are cut to the window (zeros elsewhere) and filtered; the
    filtered signals keep their ``filters_len - 1`` samples of tail, as in museval (see :func:`_criteria`).
    Windows that fit in one FFT of moderate size are done in the frequency domain, many at once
    (:func:`_short_window_scores`); longer ones (whole tracks) block by block, with bounded memory
    (:func:`_long_window_scores`).

    Args:
        references, estimates: (n_sources, n_samples, n_channels) float64.
        bounds: windows as (start, stop) sample indices.
        filters_all, filters_pair, pairs: as returned by :func:`_distortion_filters`.
    Returns:
        (4, n_pairs, n_windows) float64 in dB (SDR, ISR, SIR, SAR).
    """
    layout = _Pairs(tuple(pairs), references.shape[0], references.shape[2])
    filters_len = filters_all.shape[3]
    n_fft = _window_fft_len(bounds, filters_len)
    if _spectral_bytes(layout, n_fft) <= _CHUNK_BYTES:
        return _short_window_scores(references, estimates, bounds, filters_all, filters_pair, layout,
                                    bsseval_sources_version)
    return np.stack([_long_window_scores(references, estimates, bound, filters_all, filters_pair, layout,
                                         bsseval_sources_version) for bound in bounds], axis=-1)


def _spectral_bytes(layout: _Pairs, n_fft: int) -> int:
    """Memory of one window done in the frequency domain: its spectra, the mixing matrices, the error terms over
    all frequencies (an upper bound: :func:`_short_window_scores` makes the error terms a block of frequencies at
    a time; the bound still decides between the short and the long path, as before)."""
    n_freqs = n_fft // 2 + 1
    return 16 * n_freqs * (4 * layout.n_ref + 8 * layout.n_out + layout.n_ref * (layout.n_ref + layout.n_out))


def _short_window_scores(references: np.ndarray, estimates: np.ndarray, bounds: Sequence[tuple[int, int]],
                         filters_all: np.ndarray, filters_pair: np.ndarray, layout: _Pairs,
                         bsseval_sources_version: bool, spectra: Optional[np.ndarray] = None) -> np.ndarray:
    """:func:`_window_scores` for windows up to a moderate length: one FFT per window and signal, the filtering
    as a product of small matrices per frequency, energies by Parseval's identity; windows go in chunks, and each
    chunk goes through the frequencies a block at a time, so that its products and error terms stay small.

    ``spectra`` (n_windows, 2, n_ref, F), if given, are the windows' spectra (references, then estimates) at this
    function's FFT length, computed already (:func:`_tiled_spectra`).

    Returns:
        (4, n_pairs, n_windows) float64 in dB.
    """
    n_ref, n_channels, n_pairs = layout.n_ref, layout.n_channels, len(layout.pairs)
    filters_len = filters_all.shape[3]
    n_fft = _window_fft_len(bounds, filters_len)
    n_freqs = n_fft // 2 + 1
    # Parseval for a real signal from its half spectrum: DC and Nyquist once, the others twice
    weights = np.full(n_freqs, 2.0 / n_fft)
    weights[0] = 1.0 / n_fft
    if n_fft % 2 == 0:
        weights[-1] = 1.0 / n_fft
    mixing = _mixing(filters_all, filters_pair, layout, n_fft)
    true_columns, est_columns = layout.true_columns, layout.est_columns
    true_sources = np.array([j for j, _ in layout.pairs])
    est_sources = np.array([e for _, e in layout.pairs])

    # the spectra of a chunk of windows and, when computed here, their frames; the products and error terms are
    # made for a block of frequencies at a time, small enough to stay in the processor's cache
    per_window = 16 * n_freqs * 2 * n_ref + (8 * n_fft * 2 * n_ref if spectra is None else 0)
    # chunks of windows, scored on _WORKERS threads at once (numpy and the FFTs release the GIL), each within its
    # share of the memory budget
    chunk = max(1, min((_CHUNK_BYTES - mixing.nbytes) // _WORKERS // per_window, -(-len(bounds) // _WORKERS)))
    firsts = range(0, len(bounds), chunk)
    scores = np.empty((4, n_pairs, len(bounds)))

    def score_chunk(first: int) -> None:
        chunk_bounds = bounds[first:first + chunk]
        n_win = len(chunk_bounds)
        if spectra is None:
            chunk_spectra = _window_spectra(references, estimates, chunk_bounds, n_fft,
                                            workers=1 if len(firsts) > 1 else _WORKERS)
        else:
            chunk_spectra = spectra[first:first + chunk]
        # per frequency and window: the block's spectra, the filtered signals and the four error terms
        block = max(16, _FREQUENCY_BLOCK_BYTES // (16 * n_win * (3 * n_ref + 5 * layout.n_out)))
        err_energies = np.zeros((4, n_win, n_pairs))  # |E - S|^2, |Pj - S|^2, |Pa - Pj|^2, |E - Pa|^2
        energy_ref = np.zeros((n_win, layout.n_sources))  # |S|^2
        energy_filtered = np.zeros((n_win, layout.n_sources + n_pairs))  # |Pa|^2 per estimate, |Pj|^2 per pair
        for low in range(0, n_freqs, block):
            high = min(low + block, n_freqs)
            part = np.ascontiguousarray(chunk_spectra[..., low:high].transpose(1, 3, 0, 2))  # (2, f, T, n_ref)
            true_image, estimate = part[0][:, :, true_columns], part[1][:, :, est_columns]  # S, E
            filtered = np.matmul(part[0], mixing[low:high])  # (f, T, n_ref + n_out)
            projection_all, projection_pair = filtered[:, :, est_columns], filtered[:, :, n_ref:]  # Pa, Pj
            errors = np.empty((4, high - low, n_win, layout.n_out), dtype=np.complex128)
            np.subtract(estimate, projection_pair if bsseval_sources_version else true_image, out=errors[0])
            np.subtract(projection_pair, true_image, out=errors[1])  # e_spat
            np.subtract(projection_all, projection_pair, out=errors[2])  # e_interf
            np.subtract(estimate, projection_all, out=errors[3])  # e_artif
            err_energies += _spectral_energies(errors, weights[low:high], n_channels)  # (4, T, P)
            energy_ref += _spectral_energies(part[0], weights[low:high], n_channels)  # squares part[0]: last
            energy_filtered += _spectral_energies(filtered, weights[low:high], n_channels)
        err_true, err_spat, err_interf, err_artif = err_energies
        energies = np.stack([energy_ref[:, true_sources], err_true, err_spat, energy_filtered[:, layout.n_sources:],
                             err_interf, energy_filtered[:, est_sources], err_artif])
        scores[:, :, first:first + n_win] = _criteria(energies, bsseval_sources_version).transpose(0, 2, 1)

    if len(firsts) == 1:
        score_chunk(0)
    else:
        with concurrent.futures.ThreadPoolExecutor(_WORKERS) as pool:
            list(pool.map(score_chunk, firsts))  # list(): re-raises a chunk's exception here
    return scores


def _spectral_energies(spectra: np.ndarray, weights: np.ndarray, n_channels: int) -> np.ndarray:
    """Energies of signals given by their half spectra, summed over groups of ``n_channels`` channels.

    Args:
        spectra: (..., F, T, n_groups * n_channels) complex128, C-contiguous; squared in place (values are lost).
        weights: (F,) Parseval weights (1/n_fft for DC and Nyquist, 2/n_fft otherwise).
    Returns:
        (..., T, n_groups) float64: sum over frequencies and channels of the squared magnitudes, i.e. the
        time-domain energies of the signals.
    """
    *lead, n_freqs, n_win, n_columns = spectra.shape
    squares = spectra.view(np.float64)
    np.multiply(squares, squares, out=squares)
    per_column = np.matmul(weights, squares.reshape(*lead, n_freqs, n_win * n_columns * 2))
    return per_column.reshape(*lead, n_win, n_columns // n_channels, 2 * n_channels).sum(axis=-1)


def _long_window_scores(references: np.ndarray, estimates: np.ndarray, bound: tuple[int, int],
                        filters_all: np.ndarray, filters_pair: np.ndarray, layout: _Pairs,
                        bsseval_sources_version: bool) -> np.ndarray:
    """:func:`_window_scores` for one long window (e.g. a whole track), block by block with bounded memory.

    The window is filtered by overlap-add: each block of ``block`` samples is filtered in the frequency domain,
    brought back to the time domain, and its ``filters_len - 1`` samples of tail are added to the next block. The
    energies are summed in the time domain as samples become final, the last tail after the window included.

    Returns:
        (4, n_pairs) float64 in dB.
    """
    n_ref, n_channels = layout.n_ref, layout.n_channels
    filters_len = filters_all.shape[3]
    tail_len = filters_len - 1
    n_fft = scipy.fft.next_fast_len(max(_LONG_BLOCK_FFT, 2 * filters_len), real=True)
    while n_fft > 2 * filters_len and _spectral_bytes(layout, n_fft) > _CHUNK_BYTES:
        n_fft = scipy.fft.next_fast_len(n_fft // 2, real=True)
    block = n_fft - tail_len
    mixing = _mixing(filters_all, filters_pair, layout, n_fft)
    true_columns, est_columns = layout.true_columns, layout.est_columns
    pair_columns = slice(n_ref, n_ref + layout.n_out)

    energies = np.zeros((7, layout.n_out))  # per (pair, channel) column, summed over channels at the end
    pending = np.zeros((tail_len, n_ref + layout.n_out))  # tail of the filtered signals not yet final

    def accumulate(true_image, estimate, filtered):
        """Add the energies of the seven terms over some final samples (time along axis 0)."""
        projection_all, projection_pair = filtered[:, est_columns], filtered[:, pair_columns]
        first_error = estimate - (projection_pair if bsseval_sources_version else true_image)
        for k, term in enumerate((true_image, first_error, projection_pair - true_image, projection_pair,
                                  projection_all - projection_pair, projection_all, estimate - projection_all)):
            energies[k] += np.einsum("tc,tc->c", term, term)

    start, stop = bound
    for block_start in range(start, stop, block):
        block_stop = min(block_start + block, stop)
        length = block_stop - block_start
        frames = np.zeros((2, n_ref, n_fft))
        _channel_rows(frames[0], references, block_start, block_stop)
        _channel_rows(frames[1], estimates, block_start, block_stop)
        spectrum = scipy.fft.rfft(frames[0], axis=-1, workers=_WORKERS)
        spectrum = np.matmul(spectrum.T[:, None, :], mixing)[:, 0, :]  # (F, n_ref + n_out)
        filtered = scipy.fft.irfft(spectrum, n=n_fft, axis=0, workers=_WORKERS)  # (n_fft, n_ref + n_out)
        filtered[:tail_len] += pending
        pending = filtered[length:length + tail_len].copy()
        accumulate(frames[0, true_columns, :length].T, frames[1, est_columns, :length].T, filtered[:length])
    zeros = np.zeros((tail_len, layout.n_out))
    accumulate(zeros, zeros, pending)  # after the window: references and estimate are zero, filters ring on
    energies = energies.reshape(7, len(layout.pairs), n_channels).sum(axis=-1)
    return _criteria(energies, bsseval_sources_version)


# --------------------------------------------------------------------------------------------- bss_eval
def _nonzero(sources: np.ndarray) -> np.ndarray:
    """(n_sources, n_samples) bool: where the sum over channels is not 0 (museval's silence test, in the input's
    dtype)."""
    if sources.shape[2] == 1:  # one channel is its own sum
        return sources[:, :, 0] != 0
    return np.sum(sources, axis=2) != 0


def _validate(reference_sources: np.ndarray, estimated_sources: np.ndarray) -> None:
    """museval's checks: same shapes, at most 3 dimensions, at most MAX_SOURCES sources (the all-silent source is
    :func:`_check_not_silent`, on the silence masks computed once)."""
    if reference_sources.shape != estimated_sources.shape:
        raise BSSEvalInputError(f"the estimated sources and the references must have the same shape "
                                f"(n_sources, n_samples, n_channels); references {reference_sources.shape}, "
                                f"estimates {estimated_sources.shape}")
    if reference_sources.ndim > 3 or estimated_sources.ndim > 3:
        raise BSSEvalInputError(f"sources must have at most 3 dimensions (n_sources, n_samples, n_channels), "
                                f"got {reference_sources.ndim}")
    for name, sources in (("reference", reference_sources), ("estimated", estimated_sources)):
        if sources.size == 0:
            warnings.warn(f"{name} sources are empty: sdr, isr, sir, sar and perm are empty arrays")
    if reference_sources.shape[0] > MAX_SOURCES:
        raise BSSEvalInputError(f"{reference_sources.shape[0]} sources: at most MAX_SOURCES = {MAX_SOURCES}")


def _check_not_silent(nonzero: np.ndarray, name: str) -> None:
    """``nonzero``: (n_sources, n_samples) from :func:`_nonzero`; a source silent throughout is an error."""
    silent = np.flatnonzero(~np.any(nonzero, axis=1))
    if silent.size:
        raise BSSEvalInputError(f"{name} source {int(silent[0])} is silent (all zeros) over the whole "
                                f"signal; BSS Eval needs every source to be non-silent")


@contextlib.contextmanager
def _wheel_openblas_on_one_thread(libraries: Sequence[tuple[object, str]]):
    """Set the OpenBLAS builds of ``libraries`` ((ctypes library, symbol suffix)) to one thread, then restore."""
    setters = [(getattr(lib, f"scipy_openblas_get_num_threads{suffix}"),
                getattr(lib, f"scipy_openblas_set_num_threads{suffix}")) for lib, suffix in libraries]
    before = [get() for get, _ in setters]
    for _, set_threads in setters:
        set_threads(1)
    try:
        yield
    finally:
        for (_, set_threads), threads in zip(setters, before):
            set_threads(threads)


@functools.lru_cache(maxsize=1)
def _wheel_openblas_libraries() -> Optional[tuple[tuple[object, str], ...]]:
    """The OpenBLAS builds inside the numpy and scipy wheels (``scipy-openblas``), as ctypes libraries with the
    suffix of their symbols (``64_`` for numpy's 64-bit-integer build), or None where numpy or scipy use another
    BLAS (a conda build, a system library)."""
    import ctypes
    import glob

    found = []
    for module in (np, scipy):
        folder = Path(module.__file__).resolve().parents[1] / f"{module.__name__}.libs"
        paths = glob.glob(str(folder / "libscipy_openblas*.so*"))
        if len(paths) != 1:
            return None
        library = ctypes.CDLL(paths[0])  # already loaded: the same handle
        suffix = next((s for s in ("64_", "") if hasattr(library, f"scipy_openblas_set_num_threads{s}")), None)
        if suffix is None or not hasattr(library, f"scipy_openblas_get_num_threads{suffix}"):
            return None
        found.append((library, suffix))
    return tuple(found)


def _single_threaded_blas():
    """Context in which BLAS runs on one thread.

    numpy and scipy each bring their own OpenBLAS, whose threads busy-wait between calls; on a machine with few
    cores and other work running, alternating between the two (batched products in numpy, Cholesky in scipy) made
    the evaluation many times slower than on one thread. The FFTs keep using every core (``scipy.fft`` workers),
    and the window chunks and linear systems run on threads of their own. The OpenBLAS builds of the numpy and
    scipy wheels are set directly (threadpoolctl's scan of every loaded library costs ~15 ms per process, 8 % of a
    30 s evaluation); any other BLAS through threadpoolctl.
    """
    libraries = _wheel_openblas_libraries()
    if libraries is not None:
        return _wheel_openblas_on_one_thread(libraries)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn (librosa's dependency)
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _score_windows(references: np.ndarray, estimates: np.ndarray, bounds: Sequence[tuple[int, int]],
                   active: Sequence[int], pair_scores: np.ndarray, pairs: Sequence[tuple[int, int]],
                   filters_len: int, framewise_filters: bool, bsseval_sources_version: bool) -> None:
    """Fill ``pair_scores[:, :, t]`` (metric, pair, window) for the windows ``active`` (filters once or per window).

    Args:
        references, estimates: (n_sources, n_samples, n_channels) float64.
    """
    if not active:
        return
    if not framewise_filters:
        layout = _Pairs(tuple(pairs), references.shape[0], references.shape[2])
        tiled = _tiled_spectra(references, estimates, bounds, filters_len, layout)
        if tiled is None:
            filters = _distortion_filters(references, estimates, filters_len, pairs)
            pair_scores[:, :, active] = _window_scores(references, estimates, [bounds[t] for t in active],
                                                       *filters, pairs, bsseval_sources_version)
            return
        spectra, blocks, n_fft = tiled
        correlations = _tiled_correlations(references, estimates, spectra, blocks, n_fft, filters_len)
        filters = _distortion_filters(references, estimates, filters_len, pairs, correlations)
        windows = slice(0, len(bounds)) if len(active) == len(bounds) else active  # a view when all are active
        pair_scores[:, :, active] = _short_window_scores(references, estimates, [bounds[t] for t in active],
                                                         *filters, layout, bsseval_sources_version,
                                                         spectra=spectra[windows])
        return
    for t in active:
        start, stop = bounds[t]
        window_ref, window_est = references[:, start:stop], estimates[:, start:stop]
        filters = _distortion_filters(window_ref, window_est, filters_len, pairs)
        pair_scores[:, :, t] = _window_scores(window_ref, window_est, [(0, stop - start)], *filters, pairs,
                                              bsseval_sources_version)[:, :, 0]


def bss_eval(reference_sources, estimated_sources, window=2 * 44100, hop=1.5 * 44100,
             compute_permutation=False, filters_len=512, framewise_filters=False, bsseval_sources_version=False):
    """BSS Eval version 4 (museval 0.4.1's ``metrics.bss_eval``): framewise SDR, ISR, SIR, SAR in dB.

    Args:
        reference_sources: (n_sources, n_samples, n_channels) true source images (also (n_sources, n_samples) or
            (n_samples,), read as mono); any real dtype, computed in float64.
        estimated_sources: the estimates, same shape.
        window: window length in samples; ``np.inf`` or >= n_samples scores the whole signal as one window.
        hop: hop between windows in samples.
        compute_permutation: also try every assignment of estimates to sources and keep the best one by mean SIR
            (one permutation for the whole track, or one per window with ``framewise_filters``).
        filters_len: length in samples of the distortion filters.
        framewise_filters: estimate the filters anew in every window (BSS Eval v3) instead of once on the track.
        bsseval_sources_version: the ``bss_eval_sources`` criteria of BSS Eval v2/v3 (ISR is then NaN).
    Returns:
        ``(sdr, isr, sir, sar, perm)``: four (n_sources, n_windows) float64 arrays in dB, NaN in windows where a
        reference or an estimate is silent, +inf where an error term is exactly zero; ``perm`` (n_sources, 1)
        int64 (``(n_sources, n_windows)`` with ``framewise_filters``): estimate ``perm[j]`` was scored against
        source ``j``.
    Raises:
        BSSEvalInputError (a ``ValueError``): shapes differ, more than 3 dimensions, a source silent throughout.
    """
    estimated_sources = np.atleast_3d(estimated_sources)
    reference_sources = np.atleast_3d(reference_sources)
    _validate(reference_sources, estimated_sources)
    if reference_sources.size == 0 or estimated_sources.size == 0:
        return np.array([]), np.array([]), np.array([]), np.array([]), np.array([])

    n_sources, n_samples, n_channels = estimated_sources.shape
    if compute_permutation:
        candidates = np.array(list(itertools.permutations(range(n_sources))))
    else:
        candidates = np.arange(n_sources)[None, :]
    pairs = sorted({(j, int(e)) for j in range(n_sources) for e in candidates[:, j]})
    pair_index = {pair: p for p, pair in enumerate(pairs)}

    bounds = frame_bounds(window, hop, n_samples)
    n_windows = len(bounds)
    nonzero_references, nonzero_estimates = _nonzero(reference_sources), _nonzero(estimated_sources)
    _check_not_silent(nonzero_references, "reference")
    _check_not_silent(nonzero_estimates, "estimated")
    silent = _silent_windows(np.concatenate([nonzero_references, nonzero_estimates]), bounds)
    references = np.asarray(reference_sources, dtype=np.float64)  # a view when the input is float64 already
    estimates = np.asarray(estimated_sources, dtype=np.float64)

    pair_scores = np.full((4, len(pairs), n_windows), np.nan)
    active = [t for t in range(n_windows) if not silent[t]]
    with _single_threaded_blas():
        _score_windows(references, estimates, bounds, active, pair_scores, pairs, filters_len, framewise_filters,
                       bsseval_sources_version)

    # s_r[metric, true source, estimate, window] as museval lays it out (pairs never scored stay NaN)
    s_r = np.full((4, n_sources, n_sources, n_windows), np.nan)
    for (j, e), p in pair_index.items():
        s_r[:, j, e] = pair_scores[:, p]

    sources = np.arange(n_sources)
    if framewise_filters:
        mean_sir = np.stack([np.mean(s_r[2, sources, perm, :], axis=0) for perm in candidates])
    else:
        mean_sir = np.stack([[np.mean(s_r[2, sources, perm, :])] for perm in candidates])
    best = candidates[np.argmax(mean_sir, axis=0)].T  # (n_sources, 1) or (n_sources, n_windows)
    if framewise_filters:
        result = np.empty((4, n_sources, n_windows))
        for t in range(n_windows):
            result[:, :, t] = s_r[:, sources, best[:, t], t]
    else:
        result = s_r[:, sources, best[:, 0], :]
    return result[0], result[1], result[2], result[3], best


# ------------------------------------------------------------------------------------------------ evaluate
def pad_or_truncate(references: np.ndarray, estimates: np.ndarray, warn_user: bool = True
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Bring the estimates to the references' length, as museval's ``evaluate`` does.

    Longer estimates are cut at the references' length, shorter ones get zeros at the end (museval does this
    silently; here a one-line warning says so).

    Args:
        references: (n_sources, n_samples, n_channels).
        estimates: (n_sources, n_samples_est, n_channels).
    Returns:
        ``(references, estimates)`` with estimates of shape (n_sources, n_samples, n_channels).
    """
    n_ref, n_est = references.shape[1], estimates.shape[1]
    if n_est == n_ref:
        return references, estimates
    if warn_user:
        action = "cut" if n_est > n_ref else "zero-padded"
        warn(f"estimates have {n_est} samples and references {n_ref}: estimates {action} to {n_ref} samples")
    if n_est > n_ref:
        return references, estimates[:, :n_ref]
    return references, np.pad(estimates, [(0, 0), (0, n_ref - n_est), (0, 0)])


def evaluate(references, estimates, win=1 * 44100, hop=1 * 44100, mode="v4", padding=True):
    """museval's ``evaluate``: BSS Eval images metrics, framewise, without permutation.

    Args:
        references: (n_sources, n_samples, n_channels) array or list of (n_samples, n_channels) arrays.
        estimates: the same for the estimates (lengths may differ from the references' when ``padding``).
        win: window length in samples (1 s at 44.1 kHz by default).
        hop: hop in samples.
        mode: ``"v4"`` (filters once per track) or ``"v3"`` (filters per window).
        padding: pad or cut the estimates to the references' length (:func:`pad_or_truncate`).
    Returns:
        ``(SDR, ISR, SIR, SAR)``, each (n_sources, n_windows) float64 in dB.
    """
    if mode not in ("v3", "v4"):
        raise BSSEvalInputError(f"mode must be 'v4' or 'v3', got {mode!r}")
    estimates = np.asarray(estimates)
    references = np.asarray(references)
    if padding and references.ndim == 3 and estimates.ndim == 3:
        references, estimates = pad_or_truncate(references, estimates)
    sdr, isr, sir, sar, _ = bss_eval(references, estimates, window=win, hop=hop, compute_permutation=False,
                                     framewise_filters=(mode == "v3"), bsseval_sources_version=False)
    return sdr, isr, sir, sar


# ------------------------------------------------------------------------------------------ stores, output
@dataclasses.dataclass
class Scores:
    """Framewise BSS Eval scores of one track (one separation): the suite's one score class.

    Attributes:
        targets: source names, one per row of the arrays.
        values: {metric: (n_targets, n_frames) float64 dB} for every metric of :data:`METRICS`, NaN where
            undefined (silent frames).
        window: frame length in seconds (the JSON's frame ``duration``).
        hop: hop in seconds (frame ``i`` starts at ``i * hop`` s).
        track: track name (the CSV's ``track`` column).
    """

    targets: list[str]
    values: dict[str, np.ndarray]
    window: float = 1.0
    hop: float = 1.0
    track: str = "track"

    @property
    def n_frames(self) -> int:
        return self.values["SDR"].shape[1]

    def metric(self, name: str) -> np.ndarray:
        """(n_targets, n_frames) values of ``name`` (one of SDR, ISR, SIR, SAR), dB."""
        return self.values[name]

    def stored(self, name: str) -> np.ndarray:
        """The values as museval stores them: rounded to 1e-5 dB, +-inf (an exactly zero error) as NaN."""
        values = np.asarray(self.metric(name), dtype=np.float64)
        return np.where(np.isinf(values), np.nan, np.round(values, 5))

    def to_json_dict(self) -> dict:
        """museval's JSON layout: ``{"targets": [{"name", "frames": [{"time", "duration", "metrics"}]}]}``."""
        stored = {name: self.stored(name) for name in METRICS}
        targets = []
        for row, name in enumerate(self.targets):
            frames = [{"time": index * self.hop, "duration": self.window,
                       "metrics": {metric: float(stored[metric][row, index]) for metric in stored}}
                      for index in range(self.n_frames)]
            targets.append({"name": name, "frames": frames})
        return {"targets": targets}

    def dataframe(self) -> pd.DataFrame:
        """Long table, one row per (target, metric, frame): columns track, target, metric, time, score (dB).

        Scores are as stored (see :meth:`stored`), like museval's ``TrackStore.df``.
        """
        import pandas as pd

        rows = {"track": [], "target": [], "metric": [], "time": [], "score": []}
        for metric in METRICS:
            values = self.stored(metric)
            for row, name in enumerate(self.targets):
                n_frames = values.shape[1]
                rows["track"] += [self.track] * n_frames
                rows["target"] += [name] * n_frames
                rows["metric"] += [metric] * n_frames
                rows["time"] += [index * self.hop for index in range(n_frames)]
                rows["score"] += values[row].tolist()
        return pd.DataFrame(rows)

    def median(self) -> pd.DataFrame:
        """Median over frames (NaN frames ignored): DataFrame indexed by target, columns SDR ISR SIR SAR (dB)."""
        return aggregate([self])

    def medians(self) -> dict[str, dict[str, float]]:
        """{target: {metric: median over the frames that are not NaN}}, metrics in :data:`METRICS` order."""
        summary = self.median()
        return {target: {m: float(summary.loc[target, m]) for m in METRICS} for target in self.targets}

    def nan_frames(self) -> dict[str, int]:
        """{target: number of frames whose SDR is NaN (silent reference or estimate)}."""
        return {target: int(np.sum(~np.isfinite(self.values["SDR"][row])))
                for row, target in enumerate(self.targets)}

    def table(self, title: Optional[str] = None) -> str:
        """The medians as a text table, one row per source, with the count of NaN frames."""
        medians, nans = self.medians(), self.nan_frames()
        width = max([6] + [len(t) for t in self.targets])
        lines = [title] if title else []
        lines.append(f"{'source':<{width}}" + "".join(f"{m:>9}" for m in METRICS) + "   frames (NaN)")
        for target in self.targets:
            cells = "".join(f"{medians[target][m]:>9.2f}" for m in METRICS)
            lines.append(f"{target:<{width}}{cells}   {self.n_frames} ({nans[target]})")
        return "\n".join(lines)

    def save_json(self, path: str | Path) -> Path:
        """Write :meth:`to_json_dict` to ``path`` (NaN written as ``NaN``, as museval does)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json_dict(), indent=2, allow_nan=True))
        return path

    def save_csv(self, path: str | Path) -> Path:
        """Write :meth:`dataframe` to ``path`` as CSV (NaN as an empty field)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.dataframe().to_csv(path, index=False)
        return path

    def save(self, folder: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``folder/metrics.json`` (museval's layout) and ``folder/metrics.csv``; returns both paths."""
        folder = Path(folder)
        return self.save_json(folder / JSON_NAME), self.save_csv(folder / CSV_NAME)

    @classmethod
    def load(cls, path: str | os.PathLike, track: Optional[str] = None) -> "Scores":
        """Read a JSON file in museval's layout (written by :meth:`save`, or museval's own); ``track`` defaults to
        the file's stem.

        Raises:
            UserError: the file is missing or not in that layout.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            names = [target["name"] for target in data["targets"]]
            values = {metric: np.atleast_2d(np.array([[float(frame["metrics"][metric]) for frame in target["frames"]]
                                                      for target in data["targets"]], dtype=np.float64))
                      for metric in METRICS}
            first = data["targets"][0]["frames"] if names else []
        except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
            raise UserError(f"{path} is not a metrics.json in museval's layout ({type(err).__name__}: {err})") \
                from None
        window = float(first[0]["duration"]) if first else 1.0
        hop = float(first[1]["time"] - first[0]["time"]) if len(first) > 1 else window
        return cls(names, values, window, hop, track if track is not None else path.stem)


def aggregate(tracks: Iterable[Scores] | pd.DataFrame) -> pd.DataFrame:
    """The field's summary: per track, target and metric the median over frames (NaN ignored), then the
    median over tracks.

    Args:
        tracks: :class:`Scores` objects, or a long DataFrame with columns track, target, metric, score.
    Returns:
        DataFrame indexed by target (in order of appearance), columns SDR ISR SIR SAR, in dB.
    """
    import pandas as pd

    frames = tracks if isinstance(tracks, pd.DataFrame) else pd.concat([t.dataframe() for t in tracks],
                                                                       ignore_index=True)
    per_track = frames.groupby(["track", "target", "metric"], sort=False)["score"].median()  # skips NaN
    summary = per_track.groupby(level=["target", "metric"], sort=False).median().unstack("metric")
    summary = summary.reindex(index=pd.unique(frames["target"]), columns=list(METRICS))
    summary.columns.name = None
    return summary


def score_track(references: np.ndarray, estimates: np.ndarray, rate: int, targets: Sequence[str],
                track: str = "track", win: float = 1.0, hop: float = 1.0, mode: str = "v4") -> Scores:
    """Score one track with :func:`evaluate` (windows given in seconds).

    Args:
        references, estimates: (n_sources, n_samples, n_channels) audio.
        rate: sample rate in Hz.
        targets: source names.
        win, hop: window and hop in seconds (museval uses ``int(seconds * rate)`` samples).
    """
    sdr, isr, sir, sar = evaluate(references, estimates, win=int(win * rate), hop=int(hop * rate), mode=mode)
    return Scores(list(targets), dict(zip(METRICS, (sdr, isr, sir, sar))), win, hop, track)
