"""Benchmark: the suite's batched mel spectrograms against the seed's per-segment librosa loop.

Compared:

* **suite** -- ``datasets.preprocessing``: ``load_audio`` then ``audio_to_mel_segments`` (one vectorised STFT over
  all segments, Slaney mel filters, 10 log10 clipped to [-100, 20] dB), exactly what ``datasets/wav_to_spec.py``
  runs per file;
* **seed** -- ``librosa.load(path, sr=16000)`` (float32) then, segment by segment,
  ``librosa.feature.melspectrogram(y=segment, sr=16000, n_fft=2048, hop_length=512, n_mels=96, fmin=125,
  fmax=7600, pad_mode="reflect")`` followed by ``librosa.power_to_db(S, top_db=None)`` clipped to [-100, 20].

Both cut the audio with ``segment_audio`` (2.04 s segments, last one zero-padded), so the outputs have the same
shape, (n_segments, 96, 64).

Measured, on deterministic synthetic music-like audio (harmonic notes with envelopes, a little noise, 16 kHz
float32):

(a) the spectrogram computation alone, on audio already in memory;
(b) the whole file-to-spectrogram path: read a 16-bit wav written to a temporary folder, then compute.

Each is repeated ``--repeats`` times (suite and seed alternate inside each repeat, so machine noise hits both);
the median is reported as audio-seconds processed per second of wall time, with the speed-up ratio. Accuracy:
the largest absolute dB difference between suite and seed over the bins where the seed's value is above -100 dB
(goal: < 0.01 dB), and the same against librosa run on float64 input.

    .venv/bin/python benchmarks/bench_wav_to_spec.py [--minutes 5] [--repeats 3] [--profile]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import core  # noqa: E402,F401  (quiets TensorFlow's C++ logging; imported before anything pulls TF in)
import numpy as np  # noqa: E402

from core.spectral import SpectrogramParams, audio_to_mel_segments, segment_audio  # noqa: E402
from datasets.preprocessing import load_audio, write_audio  # noqa: E402

SPEEDUP_GOAL = 4.0       # suite vs seed, spectrogram computation
ACCURACY_GOAL_DB = 0.01  # max |suite - seed| over bins above the floor


# ---------------------------------------------------------------------------------------------- synthetic audio

def music_like_audio(minutes: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Deterministic music-like audio: three voices of harmonic notes with attack/decay envelopes, plus noise.

    Returns:
        (n_samples,) float32, peak 0.8.
    """
    rng = np.random.default_rng(seed)
    n = int(round(minutes * 60 * sample_rate))
    audio = np.zeros(n)
    scale = np.array([0, 2, 4, 5, 7, 9, 11])  # major scale, semitones
    # (base frequency Hz, octave span, note lengths s, harmonics, harmonic roll-off exponent, loudness)
    voices = [(55.0, 2, (0.5, 1.0), 10, 1.2, 0.5),       # bass
              (220.0, 2, (0.25, 0.5), 8, 1.0, 0.35),     # chords / accompaniment
              (440.0, 2, (0.125, 0.25, 0.5), 6, 1.5, 0.3)]  # melody
    for base, octaves, lengths, n_harm, rolloff, loudness in voices:
        start = 0
        while start < n:
            length = int(rng.choice(lengths) * sample_rate)
            stop = min(n, start + length)
            if rng.random() < 0.1:  # a rest now and then
                start = stop
                continue
            step = rng.choice(scale) + 12 * rng.integers(0, octaves)
            f0 = base * 2.0 ** (step / 12.0)
            t = np.arange(stop - start) / sample_rate
            attack = np.minimum(1.0, t / 0.01)
            envelope = attack * np.exp(-t / (0.3 * length / sample_rate + 0.05))
            k = np.arange(1, n_harm + 1)
            k = k[k * f0 < sample_rate / 2]
            amps = rng.uniform(0.5, 1.0, k.size) / k ** rolloff
            phases = rng.uniform(0, 2 * np.pi, k.size)
            tone = amps @ np.sin(2 * np.pi * f0 * np.outer(k, t) + phases[:, None])
            audio[start:stop] += loudness * rng.uniform(0.6, 1.0) * envelope * tone
            start = stop
    audio += 1e-3 * rng.standard_normal(n)  # noise floor about -60 dB below full scale
    audio *= 0.8 / np.max(np.abs(audio))
    return audio.astype(np.float32)


# ------------------------------------------------------------------------------------------- the two methods

def seed_mel(segments: np.ndarray, params: SpectrogramParams) -> np.ndarray:
    """The seed's way: one librosa call per segment, dB clipped to [db_min, db_max]."""
    import librosa

    out = np.empty((segments.shape[0],) + params.shape, dtype=np.float32)
    for i, segment in enumerate(segments):
        S = librosa.feature.melspectrogram(y=segment, sr=params.sample_rate, n_fft=params.n_fft,
                                           hop_length=params.hop_length, n_mels=params.n_mels, fmin=params.fmin,
                                           fmax=params.fmax, pad_mode=params.pad_mode)
        out[i] = np.clip(librosa.power_to_db(S, top_db=None), params.db_min, params.db_max)
    return out


def suite_mel(audio: np.ndarray, params: SpectrogramParams) -> np.ndarray:
    return audio_to_mel_segments(audio, params, "dB")


def seed_file(path: Path, params: SpectrogramParams) -> np.ndarray:
    import librosa

    audio, _ = librosa.load(str(path), sr=params.sample_rate)  # float32, mono, as the seed loaded it
    return seed_mel(segment_audio(audio, params.segment_samples), params)


def suite_file(path: Path, params: SpectrogramParams) -> np.ndarray:
    audio, _ = load_audio(path, params.sample_rate)
    return audio_to_mel_segments(audio, params, "dB")


# ------------------------------------------------------------------------------------------------------ timing

def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def measure_pair(suite_fn, suite_args, seed_fn, seed_args, repeats: int):
    """Run suite and seed alternately ``repeats`` times; return (suite times, seed times, suite out, seed out)."""
    suite_times, seed_times = [], []
    suite_out = seed_out = None
    for r in range(repeats):
        order = [("suite", suite_fn, suite_args), ("seed", seed_fn, seed_args)]
        if r % 2:
            order.reverse()  # alternate who goes first, so neither always inherits a warm/cold machine
        for name, fn, args in order:
            t, out = timed(fn, *args)
            if name == "suite":
                suite_times.append(t)
                suite_out = out
            else:
                seed_times.append(t)
                seed_out = out
    return suite_times, seed_times, suite_out, seed_out


def report(title: str, audio_seconds: float, suite_times, seed_times) -> float:
    suite_med, seed_med = float(np.median(suite_times)), float(np.median(seed_times))
    ratio = seed_med / suite_med
    print(f"\n{title}")
    print(f"  {'':8s}{'median s':>10s}{'audio-s/s':>12s}   all runs (s)")
    for name, med, times in (("suite", suite_med, suite_times), ("seed", seed_med, seed_times)):
        print(f"  {name:8s}{med:10.3f}{audio_seconds / med:12.1f}   {', '.join(f'{t:.3f}' for t in times)}")
    print(f"  speed-up suite/seed: {ratio:.2f}x  (goal {SPEEDUP_GOAL:.0f}x: "
          f"{'met' if ratio >= SPEEDUP_GOAL else 'NOT met'})")
    return ratio


def max_db_diff(a: np.ndarray, reference: np.ndarray, floor: float) -> tuple[float, int]:
    """Largest |a - reference| over the bins where reference > floor, and how many bins that is."""
    mask = reference > floor
    if not mask.any():
        return 0.0, 0
    return float(np.max(np.abs(a[mask].astype(np.float64) - reference[mask].astype(np.float64)))), int(mask.sum())


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the suite's batched mel spectrograms against the seed's per-segment librosa calls "
                    "(computation alone, and file-to-spectrogram), and check they agree to < 0.01 dB.")
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the synthetic audio (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each method; the median is reported "
                                                               "(default 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic audio (default 0)")
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile of one suite run (computation alone) and one seed run")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.repeats < 1:
        parser.error("--minutes must be positive and --repeats at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    params = SpectrogramParams()
    import librosa
    import scipy

    print(f"numpy {np.__version__}, scipy {scipy.__version__}, librosa {librosa.__version__}; "
          f"{args.minutes:g} min of synthetic audio, {args.repeats} repeats (median reported)")
    audio = music_like_audio(args.minutes, params.sample_rate, args.seed)
    audio_seconds = audio.shape[0] / params.sample_rate
    segments = segment_audio(audio, params.segment_samples)
    print(f"{audio_seconds:.1f} s of audio -> {segments.shape[0]} segments of {params.segment_seconds:.2f} s -> "
          f"{segments.shape[0]} x {params.shape[0]}x{params.shape[1]} mel spectrograms")

    with tempfile.TemporaryDirectory(prefix="bench_wav_to_spec_") as tmp:
        wav = Path(tmp) / "song.wav"
        write_audio(wav, audio, params.sample_rate)

        # warm-up: imports, the suite's cached filter bank and window, librosa's lazy modules, file reads
        suite_mel(audio[: 3 * params.segment_samples], params)
        seed_mel(segments[:3], params)
        suite_file(wav, params)
        seed_file(wav, params)

        # (a) computation alone
        suite_t, seed_t, suite_out, seed_out = measure_pair(suite_mel, (audio, params), seed_mel,
                                                            (segments, params), args.repeats)
        ratio_compute = report("(a) mel spectrograms of audio already in memory", audio_seconds, suite_t, seed_t)

        # (b) file -> spectrogram
        suite_ft, seed_ft, suite_fout, seed_fout = measure_pair(suite_file, (wav, params), seed_file,
                                                                (wav, params), args.repeats)
        ratio_file = report("(b) wav file -> mel spectrograms (read + compute)", audio_seconds, suite_ft, seed_ft)

        if args.profile:
            import cProfile
            import pstats

            for name, statement in (("suite", lambda: suite_mel(audio, params)),
                                    ("seed", lambda: seed_mel(segments, params))):
                profiler = cProfile.Profile()
                profiler.runcall(statement)
                print(f"\ncProfile of one {name} run (computation alone), by internal time:")
                pstats.Stats(profiler).sort_stats("tottime").print_stats(12)

    # accuracy
    reference64 = seed_mel(segments.astype(np.float64), params)
    floor = params.db_min
    diff_seed, n_bins = max_db_diff(suite_out, seed_out, floor)
    diff_64, n_bins64 = max_db_diff(suite_out, reference64, floor)
    diff_seed_64, _ = max_db_diff(seed_out, reference64, floor)
    diff_file, _ = max_db_diff(suite_fout, seed_fout, floor)
    print(f"\naccuracy, max |difference| over bins where the reference is above {floor:g} dB:")
    print(f"  suite vs seed (librosa, float32 input): {diff_seed:.2e} dB over {n_bins} bins "
          f"(goal < {ACCURACY_GOAL_DB} dB: {'met' if diff_seed < ACCURACY_GOAL_DB else 'NOT met'})")
    print(f"  suite vs librosa on float64 input:      {diff_64:.2e} dB over {n_bins64} bins")
    print(f"  seed  vs librosa on float64 input:      {diff_seed_64:.2e} dB (the seed's own float32 error)")
    print(f"  suite vs seed, file path (16-bit wav):  {diff_file:.2e} dB")
    print(f"  shapes: suite {suite_out.shape}, seed {seed_out.shape}; values in "
          f"[{suite_out.min():.1f}, {suite_out.max():.1f}] dB")

    print(f"\nsummary: computation {ratio_compute:.2f}x, file-to-spectrogram {ratio_file:.2f}x faster than the "
          f"seed (goal {SPEEDUP_GOAL:.0f}x); max dB difference {diff_seed:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
