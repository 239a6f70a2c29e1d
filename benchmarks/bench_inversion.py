"""Benchmark: the suite's mel inversion (all algorithms and methods) against librosa's per-segment mel_to_audio.

The input is one minute of a two-source "BASIS result" built like a real one: a synthetic song (two music-like
voices, "piano" low and "violin" high, harmonic notes with attack/decay envelopes, 16 kHz) written as a song folder
(mix.wav, piano.wav, violin.wav) and read back with ``datasets.data_loader.load_song``; its ground-truth mel
spectrograms (dB, 30 segments of 96 x 64) stand in for the estimates, so every SDR below measures the inversion
alone.

Compared:

* **suite** -- ``separation.inversion.invert_mel`` on both sources at once, for every algorithm (``griffin``: 32
  Griffin-Lim iterations with momentum 0.99; ``reuse_phase``: mixture phase; ``wiener``: single-channel Wiener
  filter) and method (``frame``, ``whole``), each timed from the dB mel spectrograms to the trimmed audio (NNLS
  included), median of ``--repeats`` runs; and the six one after the other, once with an NNLS each and once from
  a single ``mel_to_magnitude`` followed by six ``invert_magnitude``; plus Griffin-Lim started from the
  mixture's phase (``griffin_init="mixture"``, not in the totals);
* **librosa** -- the seed's path: per segment and per source ``librosa.feature.inverse.mel_to_audio`` on the mel
  power (NNLS by L-BFGS-B, then 32 iterations of librosa's fast Griffin-Lim, ``pad_mode="reflect"``, and, to give it
  the benefit of the doubt, ``length=32640`` so that the segments line up), segments concatenated. librosa needs
  several seconds per segment, so only the first ``--librosa_segments`` segments of each source are inverted; the
  time of the whole minute is extrapolated linearly from them (marked "extrapolated").

SDR is the global ``10 log10(|s|^2 / |s - s_hat|^2)`` against the true source audio, in dB, per source; librosa is
compared with the suite on the same first segments, where the phase-blind spectral convergence
``|| |STFT(s_hat)| - |STFT(s)| || / || |STFT(s)| ||`` is given too (lower is better). Griffin-Lim starts from
random phase and its SDR (near -2 dB: the phase of the true source is not recoverable from a magnitude) moves by a
few tenths of a dB from one start to the next, so on the first segments its SDR is the mean over ``--gl_seeds``
starts of the suite and over ``--librosa_runs`` passes of librosa (its ``mel_to_audio`` draws an unseeded random
phase), compared within two standard errors. When ``bss_eval_v4.py`` exists, the median
framewise BSS Eval v4 SDR of the suite's estimates over the whole minute is printed too.

    .venv/bin/python benchmarks/bench_inversion.py [--seconds 61.2] [--repeats 3] [--librosa_segments 4]
        [--librosa_runs 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import core  # noqa: E402,F401  (quiets TensorFlow's C++ logging; nothing here imports TF)
import numpy as np  # noqa: E402

from core import spectral  # noqa: E402
from datasets.data_loader import load_song  # noqa: E402
from core.spectral import SpectrogramParams, db_to_power  # noqa: E402
from datasets.preprocessing import write_audio  # noqa: E402
from separation import evaluation, inversion  # noqa: E402

SPEEDUP_GOAL = 10.0
SOURCES = ("piano", "violin")


def voice(seconds: float, low_hz: float, seed: int, sample_rate: int = 16000) -> np.ndarray:
    """A music-like voice: notes of 1/8 to 1/2 s, pitches from a major scale above ``low_hz``, 6 harmonics with
    decaying amplitudes, attack/decay envelopes, a little noise. (n_samples,) float32, peak 0.25."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    audio = np.zeros(n)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16])
    start = 0
    while start < n:
        length = int(sample_rate * rng.choice([0.125, 0.25, 0.375, 0.5]))
        f0 = low_hz * 2 ** (rng.choice(scale) / 12)
        t = np.arange(min(length, n - start)) / sample_rate
        envelope = np.minimum(t / 0.01, 1.0) * np.exp(-t * rng.uniform(2.0, 6.0))
        for harmonic in range(1, 7):
            if f0 * harmonic < sample_rate / 2:
                audio[start:start + t.size] += envelope * np.sin(2 * np.pi * f0 * harmonic * t
                                                                 + rng.uniform(0, 2 * np.pi)) / harmonic ** 1.5
        start += length
    audio += 0.003 * rng.standard_normal(n)
    return (0.25 * audio / np.abs(audio).max()).astype(np.float32)


def _sem(runs: np.ndarray) -> np.ndarray:
    """Standard error of the mean over the first axis (0 for a single run)."""
    return runs.std(axis=0, ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else np.zeros(runs.shape[1])


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    reference, estimate = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((reference - estimate) ** 2)))


def librosa_segment(mel_db: np.ndarray, params: SpectrogramParams) -> np.ndarray:
    """The seed's per-segment path on one (96, 64) dB segment -> (32640,) audio."""
    import librosa

    return librosa.feature.inverse.mel_to_audio(db_to_power(mel_db), sr=params.sample_rate, n_fft=params.n_fft,
                                                hop_length=params.hop_length, fmin=params.fmin, fmax=params.fmax,
                                                pad_mode="reflect", length=params.segment_samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=61.2, help="song length (61.2 s = 30 segments)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each suite method (median reported)")
    parser.add_argument("--librosa_segments", type=int, default=4,
                        help="segments per source inverted by librosa (the rest is extrapolated)")
    parser.add_argument("--librosa_runs", type=int, default=5,
                        help="passes of librosa over those segments (random phase: SDR averaged)")
    parser.add_argument("--gl_seeds", type=int, default=20,
                        help="Griffin-Lim starts of the suite on those segments (random phase: SDR averaged)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    params = SpectrogramParams()
    seg = params.segment_samples

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "song"
        tracks = {"piano": voice(args.seconds, 98.0, seed=1), "violin": voice(args.seconds, 392.0, seed=2)}
        for name, audio in tracks.items():
            write_audio(folder / f"{name}.wav", audio)
        write_audio(folder / "mix.wav", tracks["piano"] + tracks["violin"])
        song = load_song(folder, SOURCES, params)
    references = np.stack([song.sources_audio[name] for name in SOURCES])
    mel_db = np.stack([song.sources_mel[name] for name in SOURCES])  # (2, n_segments, 96, 64) "estimates"
    n_segments = mel_db.shape[1]
    n_lib = min(args.librosa_segments, n_segments)
    print(f"song: {song.n_samples / params.sample_rate:.1f} s, {n_segments} segments, sources {', '.join(SOURCES)}; "
          f"estimates = ground-truth mels (dB)")

    # warm-up: librosa's filters, FFT plans, caches
    inversion.invert_mel(mel_db[:, :1], params, "wiener", mixture_audio=song.mix_audio[:seg], n_samples=seg)
    librosa_segment(mel_db[0, 0], params)

    combos = [(a, m, "random") for a in inversion.ALGORITHMS for m in spectral.METHODS]
    extra = [("griffin", m, "mixture") for m in spectral.METHODS]  # Griffin-Lim started from the mixture's phase
    shared = []  # the six methods from one NNLS (mel_to_magnitude once, then invert_magnitude six times)
    times = {combo: [] for combo in combos + extra}
    outputs = {combo: [] for combo in combos + extra}
    librosa_times, librosa_audio = [], []
    for repeat in range(max(args.repeats, args.librosa_runs)):
        if repeat < args.repeats:
            for combo in combos + extra:
                start = time.perf_counter()
                outputs[combo].append(inversion.invert_mel(mel_db, params, combo[0], combo[1],
                                                           n_samples=song.n_samples, mixture_audio=song.mix_audio,
                                                           seed=repeat, griffin_init=combo[2]))
                times[combo].append(time.perf_counter() - start)
            start = time.perf_counter()
            magnitude = spectral.mel_to_magnitude(db_to_power(mel_db), params)
            for combo in combos:
                inversion.invert_magnitude(magnitude, params, combo[0], combo[1], n_samples=song.n_samples,
                                           mixture_audio=song.mix_audio, seed=repeat)
            shared.append(time.perf_counter() - start)
        if repeat < args.librosa_runs:  # librosa's passes interleaved with the suite's repeats
            run = {name: [] for name in SOURCES}
            for j in range(n_lib):
                for k, name in enumerate(SOURCES):
                    start = time.perf_counter()
                    run[name].append(librosa_segment(mel_db[k, j], params))
                    librosa_times.append(time.perf_counter() - start)
            librosa_audio.append(np.stack([np.concatenate(run[name]) for name in SOURCES]))

    gl_first = {}  # the suite's random-start Griffin-Lim on the librosa segments, many starts
    for combo in combos + extra:
        if combo[0] == "griffin" and combo[2] == "random":
            gl_first[combo] = [inversion.invert_mel(mel_db[:, :n_lib], params, combo[0], combo[1], seed=100 + s)
                               for s in range(args.gl_seeds)]

    def sdr_runs(estimates: list, length: int) -> np.ndarray:
        """(n_runs, n_sources) global SDR on the first ``length`` samples."""
        return np.array([[sdr(references[k, :length], e[k, :length]) for k in range(len(SOURCES))]
                         for e in estimates])

    true_magnitude = np.abs(spectral.stft(references[:, :n_lib * seg].astype(np.float64), params))

    def spectral_convergence(estimates: list) -> float:
        """Mean over runs and sources of || |STFT(s_hat)| - |STFT(s)| || / || |STFT(s)| || on the first segments
        (phase-blind: how close the estimate's spectrogram is to the true one)."""
        values = [np.linalg.norm(np.abs(spectral.stft(e[k, :n_lib * seg].astype(np.float64), params))
                                 - true_magnitude[k]) / np.linalg.norm(true_magnitude[k])
                  for e in estimates for k in range(len(SOURCES))]
        return float(np.mean(values))

    per_segment = float(np.median(librosa_times))
    librosa_minute = per_segment * n_segments * len(SOURCES)
    span = n_lib * seg
    librosa_runs = sdr_runs(librosa_audio, span)
    librosa_sdr = librosa_runs.mean(axis=0)
    print(f"\nlibrosa mel_to_audio per segment: {per_segment:.2f} s per 2.04 s segment per source (median of "
          f"{len(librosa_times)}); whole minute, both sources: {librosa_minute:.1f} s (extrapolated from "
          f"{n_lib} segments per source)")
    librosa_sc = spectral_convergence(librosa_audio)
    print(f"librosa SDR on the first {n_lib} segments, mean [min, max] of {len(librosa_audio)} runs: " +
          ", ".join(f"{name} {librosa_sdr[k]:.2f} [{librosa_runs[:, k].min():.2f}, {librosa_runs[:, k].max():.2f}]"
                    f" dB" for k, name in enumerate(SOURCES)) + f"; spectral convergence {librosa_sc:.3f}")

    print(f"\n{'algorithm':<12}{'method':<7}{'init':<9}{'time (s)':>9}{'speed-up':>10}   SDR minute (piano, violin)"
          f"   SDR first {n_lib} seg. [range over runs]        spectral conv.   vs librosa's SDR")
    print(f"(Griffin-Lim with a random start: SDR and spectral convergence on the first {n_lib} segments from "
          f"{args.gl_seeds} starts; librosa from {len(librosa_audio)} runs)")
    total = 0.0
    for combo in combos + extra:
        elapsed = float(np.median(times[combo]))
        total += elapsed if combo in combos else 0.0
        minute = sdr_runs(outputs[combo], song.n_samples).mean(axis=0)
        runs = sdr_runs(gl_first.get(combo, outputs[combo]), span)
        first = runs.mean(axis=0)
        convergence = spectral_convergence(gl_first.get(combo, outputs[combo]))
        # random starts: compare means with their standard errors (2 sigma); deterministic methods: plainly
        noise = 2 * np.sqrt(_sem(runs) ** 2 + _sem(librosa_runs) ** 2)
        if np.all(first >= librosa_sdr - 0.05):
            verdict = "equal or better"
        elif np.all(first >= librosa_sdr - noise):
            verdict = "equal within noise"
        else:
            verdict = "lower"
        ranges = " ".join(f"[{runs[:, k].min():.2f}, {runs[:, k].max():.2f}]" for k in range(len(SOURCES)))
        init = combo[2] if combo[0] == "griffin" else "-"
        print(f"{combo[0]:<12}{combo[1]:<7}{init:<9}{elapsed:>9.2f}{librosa_minute / elapsed:>9.1f}x   "
              f"{minute[0]:>7.2f} {minute[1]:>7.2f}          {first[0]:>6.2f} {first[1]:>6.2f} {ranges:<24}"
              f"{convergence:>8.3f}        {verdict}")
    print(f"the six methods (random start) one after the other: {total:.2f} s, {librosa_minute / total:.1f}x faster "
          f"than librosa's one path (goal per method >= {SPEEDUP_GOAL:.0f}x)")
    one_nnls = float(np.median(shared))
    print(f"the six methods from one NNLS (mel_to_magnitude once, invert_magnitude six times): {one_nnls:.2f} s, "
          f"{librosa_minute / one_nnls:.1f}x faster than librosa's one path")

    print("\nBSS Eval v4 (bss_eval_v4.py), median SDR over 1 s frames of the whole minute:")
    for combo in combos + extra:
        scores = evaluation.evaluate_sources(references, outputs[combo][0], list(SOURCES), params.sample_rate)
        medians = scores.medians()
        print(f"  {combo[0]:<12}{combo[1]:<7}{combo[2] if combo[0] == 'griffin' else '-':<9}"
              + "  ".join(f"{n} {medians[n]['SDR']:6.2f} dB" for n in SOURCES))


if __name__ == "__main__":
    main()
