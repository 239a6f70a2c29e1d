"""How one instrument's timbre differs between renders (or recordings) of the same excerpts: its mean mel spectrum.

For every row ``NAME=DIR``, the mean mel power of ``SOURCE.wav`` (``--source violin``: every ``*/violin.wav`` below
DIR, a song folder each) in the priors' mel bands (96 bands, 125-7600 Hz at 16 kHz; ``core.spectral``), averaged over
the song folders that every row has (matched by folder name, so that the same music is compared); then, per group
of adjacent bands (``--groups``), its level in dB against the first row. With ``--normalise LO-HI`` (Hz) each
row's mean difference over the bands between LO and HI is removed, so that the table shows the spectrum's shape
(brightness, formants) rather than its loudness.

    .venv/bin/python benchmarks/timbre_profile.py --rows fluidr3=data/bench_lotom/renders/fluidr3/songs \\
        csound=data/bench_lotom/renders/csound/songs merlin=data/bench_lotom/renders/merlin/songs \\
        --source violin [--groups 16] [--normalise 400-900]

What it is for: a bank the priors never heard separates worse than those they did when its spectrum lies outside
theirs (``docs/shipped_priors.md``); this table says how far, band by band.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.errors import UserError, run_main  # noqa: E402
from core.spectral import SpectrogramParams, audio_to_mel_segments  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", nargs="+", required=True, metavar="NAME=DIR",
                        help="folders of song folders, one per timbre; the first is the reference")
    parser.add_argument("--source", default="violin", help="the wav compared in every song folder (SOURCE.wav)")
    parser.add_argument("--groups", type=int, default=16, help="groups of adjacent mel bands in the table")
    parser.add_argument("--normalise", default=None, metavar="LO-HI",
                        help="remove each row's mean difference over the bands between LO and HI Hz")
    return parser.parse_args(argv)


def mean_mel_power(paths, params: SpectrogramParams = SpectrogramParams()) -> np.ndarray:
    """The mel power (n_mels,) the priors see (``audio_to_mel_segments``, power scale), averaged over every frame
    of every file (each read at ``params.sample_rate``, mono); files of equal length weigh equally."""
    from datasets.preprocessing import load_audio

    total, frames = np.zeros(params.n_mels), 0
    for path in paths:
        audio, _ = load_audio(path, params.sample_rate)
        mel = audio_to_mel_segments(audio, params, scale="power")       # (n_segments, n_mels, n_frames)
        total += mel.sum(axis=(0, 2), dtype=np.float64)
        frames += mel.shape[0] * mel.shape[2]
    return total / max(frames, 1)


def band_groups(n_mels: int, groups: int) -> list[slice]:
    """``groups`` runs of adjacent mel bands covering all ``n_mels`` (the last ones one band shorter)."""
    edges = np.linspace(0, n_mels, min(groups, n_mels) + 1).round().astype(int)
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def profile(levels_db: dict[str, np.ndarray], centres_hz: np.ndarray, groups: int,
            normalise: tuple[float, float] | None = None) -> tuple[list[float], dict[str, list[float]]]:
    """Per group of bands: the centre frequency (Hz, mean of its bands') and every row's mean dB level minus the
    first row's, less that difference's mean over the bands in ``normalise`` (Hz) when given."""
    names = list(levels_db)
    diffs = {name: levels_db[name] - levels_db[names[0]] for name in names}
    if normalise is not None:
        inside = (centres_hz >= normalise[0]) & (centres_hz <= normalise[1])
        diffs = {name: d - d[inside].mean() for name, d in diffs.items()}
    runs = band_groups(len(centres_hz), groups)
    return ([float(centres_hz[r].mean()) for r in runs],
            {name: [float(d[r].mean()) for r in runs] for name, d in diffs.items()})


def main(argv=None) -> int:
    import librosa

    args = parse_args(argv)
    if args.groups < 1:
        raise UserError(f"--groups must be at least 1, got {args.groups}")
    normalise = None
    if args.normalise:
        lo, sep, hi = args.normalise.partition("-")
        try:
            normalise = (float(lo), float(hi))
        except ValueError:
            sep = ""
        if not sep or normalise[0] >= normalise[1]:
            raise UserError(f"--normalise {args.normalise!r} is not LO-HI in Hz with LO < HI (e.g. 400-900)")
    rows = {}
    for item in args.rows:
        name, sep, folder = item.partition("=")
        if not sep or not name or not Path(folder).is_dir():
            raise UserError(f"--rows {item!r} is not NAME=DIR with DIR a folder of song folders")
        rows[name] = {p.parent.name: p for p in sorted(Path(folder).rglob(f"{args.source}.wav"))}
    common = sorted(set.intersection(*(set(songs) for songs in rows.values())))
    if not common:
        raise UserError(f"no song folder with {args.source}.wav is in every row; give folders of the same excerpts")
    params = SpectrogramParams()
    centres = librosa.mel_frequencies(n_mels=params.n_mels + 2, fmin=params.fmin, fmax=params.fmax)[1:-1]
    if normalise and not np.any((centres >= normalise[0]) & (centres <= normalise[1])):
        raise UserError(f"--normalise {args.normalise}: no mel band is centred there; give a range within "
                        f"{centres[0]:.0f}-{centres[-1]:.0f} Hz (e.g. 400-900)")
    levels = {name: 10.0 * np.log10(mean_mel_power([songs[s] for s in common], params) + 1e-20)
              for name, songs in rows.items()}
    hz, diffs = profile(levels, centres, args.groups, normalise)
    first = next(iter(rows))
    print(f"{args.source}: mean mel level in dB against {first}, over {len(common)} song(s)"
          + (f", each row's mean over {normalise[0]:g}-{normalise[1]:g} Hz removed" if normalise else ""))
    width = max(8, *(len(n) + 1 for n in rows))
    print(f"{'Hz':<{width}}" + "".join(f"{f:>7.0f}" for f in hz))
    for name, values in diffs.items():
        print(f"{name:<{width}}" + "".join(f"{v:>+7.1f}" for v in values))
    return 0


if __name__ == "__main__":
    run_main(main)
