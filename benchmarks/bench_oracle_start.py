"""Benchmark: is a separation held back by the sampler's search or by the priors themselves?

BASIS runs the priors' sampler twice on every excerpt, with the same Langevin seed and schedule: from its usual
start (``mixture``: the mixture's equal share plus the first visited level's noise) and from the true sources'
mel spectrograms plus the same noise (``truth start``). A third row inverts the true mel spectrograms themselves
(``true mel``: what a perfect prior would give through the same Wiener filter of the mixture per frame). Every row
is scored with BSS Eval v4 next to the mixture baseline and the IRM oracle (median over 1 s frames of an excerpt,
then the mean over excerpts, piano / violin).

Reading it: if the separation started from the truth falls back towards the one started from the mixture, the
priors' own preference is what limits it (a longer or otherwise scheduled sampler would not help); if it stays
near ``true mel`` while the mixture start does not, the search is.

    .venv/bin/python benchmarks/bench_oracle_start.py SONG [SONG ...] [--priors pretrained] [--seed 0]
        [--T 6 --step_lr 2e-4 ...] [--output data/bench_oracle_start]

A SONG is a song folder with ``mix.wav``, ``piano.wav`` and ``violin.wav`` (e.g. the windows that
``bench_generalisation.py --windows 3`` cuts, ``OUT/renders/<row>_3x20s/windows/train/*``); each excerpt is separated
as one batch of segments, so give excerpts of tens of seconds, not whole songs. The sampler is that of
``PRIORS/piano/config.yml`` except the sampler keys given as flags (one chain). Everything is kept in ``--output``
(``<start>/<song>/`` with the wavs and scores; ``oracle_start.csv``); re-running skips what is done, and a run
with other priors, seed or sampler keys into the same ``--output`` is refused.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import core  # noqa: E402,F401  (quiets TensorFlow's start-up logging)
from core.config import CONFIG_NAME, add_key_arguments, config_overrides  # noqa: E402
from core.errors import UserError, run_main  # noqa: E402

NAMES = ("piano", "violin")
STARTS = ("mixture", "truth start", "true mel")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("songs", nargs="+", help="song folders with mix.wav, piano.wav and violin.wav")
    parser.add_argument("--priors", default="pretrained", help="folder with piano/ and violin/ prior folders")
    parser.add_argument("--seed", type=int, default=0, help="the Langevin seed of both starts (default: 0)")
    add_key_arguments(parser.add_argument_group("BASIS sampler (default: the priors' piano/config.yml)"),
                      ["T", "step_lr", "start_level", "basis_levels", "temperature", "consistency", "denoise"])
    parser.add_argument("--output", default="data/bench_oracle_start", help="work and result folder")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def true_sources(task):
    """The true sources' mel spectrograms of a :class:`separation.separate.SongTask` in model units,
    (K, N, n_mels, n_frames, 1) float32 (clipped to the data range, as the mixture is)."""
    import numpy as np

    from separation.separate import mel_to_model

    return np.stack([mel_to_model(task.song.sources_mel[n], task.config, task.model)
                     for n in task.names]).astype(np.float32)


def separate_from(basis, task, truth, start: str, seed: int):
    """The estimates (K, N, h, w, 1) of one excerpt in model units: BASIS from the mixture's share or from the
    truth (:func:`true_sources`; each start plus the same noise of the first visited level), or the truth itself
    (``true mel``)."""
    import numpy as np

    if start == "true mel":
        return truth
    mixture_start = np.asarray(basis.start(task.mixture, seed, "mixture"))
    if start == "mixture":
        init = mixture_start
    else:  # the same noise draw around the truth
        init = truth + mixture_start - np.asarray(basis.mixing.split(task.mixture, len(task.names)))
    return np.asarray(basis.separate(task.mixture, init, seed))


def folder_of(output: Path, start: str, song: Path) -> Path:
    return output / start.replace(" ", "_") / song.name


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    from benchmarks.bench_generalisation import check_prior_set
    from core.config import load_config, sampler_settings
    from core.rundir import check_run_settings, setup_logging
    from separation import evaluation, song_folders
    from separation.separate import SeparationResult, SongTask, build_basis

    prior_dir = check_prior_set(Path(args.priors), args.priors)
    songs = [Path(s) for s in args.songs]
    for song in songs:
        missing = [f"{n}.wav" for n in ("mix", *NAMES) if not (song / f"{n}.wav").is_file()]
        if missing:
            raise UserError(f"{song} has no {', '.join(missing)}: give song folders with the mixture and both "
                            "sources (e.g. the windows of bench_generalisation.py)")
    repeated = sorted({s.name for s in songs if [o.name for o in songs].count(s.name) > 1})
    if repeated:
        raise UserError(f"several songs are named {', '.join(repeated)}: their results would share a folder; give "
                        "songs of one timbre row per --output")
    config = load_config(prior_dir / "piano" / CONFIG_NAME, {**config_overrides(args), "n_chains": 1})
    output = Path(args.output)
    check_run_settings(output / "settings.json", {"priors": str(prior_dir.resolve()), "seed": args.seed,
                                                  **sampler_settings(config)})
    logger = setup_logging(output)
    restore = [str(prior_dir / n) for n in NAMES]
    basis, rows = None, []
    for song in tqdm(songs, desc="excerpts", unit="excerpt", disable=args.no_progress):
        task = SongTask.from_song(song, NAMES, config, None, "ncsn")
        truth = true_sources(task)
        for start in STARTS:
            folder = folder_of(output, start, song)
            if not (folder / evaluation.JSON_NAME).is_file():
                if start != "true mel" and basis is None:
                    basis = build_basis(task, restore, "ncsn")
                    logger.info("BASIS: %s", basis.describe())
                estimates = separate_from(basis, task, truth, start, args.seed)
                folder.mkdir(parents=True, exist_ok=True)
                result = SeparationResult(estimates, estimates[np.newaxis], np.zeros(1, np.float32), 0.0)
                task.invert_and_score(folder, result, "wiener", "frame", logger)
            medians = evaluation.Scores.load(folder / evaluation.JSON_NAME).medians()
            rows.append({"song": song.name, "method": start, **{n: medians[n]["SDR"] for n in NAMES}})
        baselines = folder_of(output, "mixture", song)
        if not song_folders.baselines_done(baselines):
            song_folders.score_baselines(task.song, NAMES, baselines)
        for method in ("mixture baseline", "IRM"):
            path = baselines / song_folders.BASELINE_DIR / method.split()[0] / evaluation.JSON_NAME
            medians = evaluation.Scores.load(path).medians()
            rows.append({"song": song.name, "method": method, **{n: medians[n]["SDR"] for n in NAMES}})
    table = pd.DataFrame(rows)
    table.to_csv(output / "oracle_start.csv", index=False)
    means = table.groupby("method", sort=False)[list(NAMES)].mean()
    print(f"SDR (dB), BSS Eval v4: median over 1 s frames, mean over {len(songs)} excerpts; piano / violin")
    for method, row in means.iterrows():
        print(f"{method:<18}{row['piano']:7.2f} /{row['violin']:6.2f}")
    return 0


if __name__ == "__main__":
    run_main(main)
