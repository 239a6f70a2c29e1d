"""Separating a folder of songs and scoring BASIS next to the mixture baseline and the IRM oracle.

Used by ``separate_songs.py`` (any folder of song folders, ``--shard i/n``) and by ``run_example.py``. For every song
the output folder ``OUT/<song>/`` gets what ``run_basis_sep.py --inverse`` writes, plus, with ground truth,
``baselines/mixture/`` (every source estimated as mixture / K) and ``baselines/IRM/`` (the ideal ratio mask of the
true source powers, IRM2) with their wavs and ``metrics.json``. A song whose ``metrics.json`` (or, without ground
truth, ``results.npz`` and wavs) is already there, with no resume state left, is not separated again; baselines
it lacks (a run stopped between the two) are scored. The aggregate is the field's convention: median over
frames per song, then median over songs.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from core.config import CONFIG_NAME
from core.errors import UserError, warn
from separation import evaluation

METHODS = ("BASIS", "mixture", "IRM")
BASELINE_DIR = "baselines"


def find_songs(root: str | Path) -> list[Path]:
    """Song folders (holding mix.wav) at ``root`` itself, one level below, or two levels below (split/song)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"song folder {root} does not exist")
    if (root / "mix.wav").is_file():
        return [root]
    songs = sorted(p.parent for pattern in ("*/mix.wav", "*/*/mix.wav") for p in root.glob(pattern))
    if not songs:
        raise UserError(f"no song folders under {root}: a song folder holds mix.wav (and <source>.wav for scores)")
    names = [s.name for s in songs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"two song folders under {root} are called {duplicates[0]}; their outputs would collide")
    return songs


def parse_shard(text: Optional[str]) -> tuple[int, int]:
    """'i/n' (1 <= i <= n) -> (i, n); None -> (1, 1).

    Raises:
        UserError: anything else.
    """
    if text is None:
        return 1, 1
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard takes i/n, e.g. 1/4 for the first of four machines; got {text!r}") from None
    if not 1 <= index <= count:
        raise UserError(f"--shard {text}: i must be between 1 and n")
    return index, count


def shard(songs: Sequence[Path], index: int, count: int) -> list[Path]:
    """Every count-th song starting at the index-th (1-based): shards are disjoint and together cover all."""
    return list(songs[index - 1::count])


def song_done(folder: Path, names: Sequence[str], with_scores: bool) -> bool:
    """Whether BASIS is done for a song: its scores (with ground truth) or its results and wavs are there and no
    resume state is left."""
    from separation.results import RESULTS_NAME
    from separation.separate import STATE_NAME

    if (folder / STATE_NAME).is_file():
        return False
    if with_scores:
        return (folder / evaluation.JSON_NAME).is_file()
    return (folder / RESULTS_NAME).is_file() and all((folder / f"{n}.wav").is_file() for n in names)


def baselines_done(folder: Path) -> bool:
    """Whether every baseline of :func:`score_baselines` has its scores in ``folder``."""
    return all((folder / BASELINE_DIR / m / evaluation.JSON_NAME).is_file() for m in METHODS[1:])


def score_baselines(song, names: Sequence[str], folder: Path) -> dict[str, evaluation.Scores]:
    """The mixture baseline and the IRM oracle of one song with ground truth; writes their wavs and metrics."""
    from datasets.preprocessing import write_estimate
    from separation.oracles import oracle_separation

    params = song.params
    references = np.stack([song.sources_audio[n] for n in names])
    estimates = {"mixture": np.repeat(song.mix_audio[None] / len(names), len(names), axis=0),
                 "IRM": oracle_separation("IRM2", song.mix_audio, references, params)}
    scores = {}
    for method, audio in estimates.items():
        out = folder / BASELINE_DIR / method
        out.mkdir(parents=True, exist_ok=True)
        for name, waveform in zip(names, audio):
            write_estimate(out / f"{name}.wav", waveform, params.sample_rate)
        scores[method] = evaluation.evaluate_sources(references, audio[:, :song.n_samples], list(names),
                                                     params.sample_rate)
        scores[method].save(out)
    return scores


def collect_scores(output: Path, songs: Sequence[Path]) -> dict[str, dict[str, evaluation.Scores]]:
    """{method: {song: Scores}} of every scored song found in ``output``."""
    found: dict[str, dict[str, evaluation.Scores]] = {m: {} for m in METHODS}
    for song in songs:
        paths = {"BASIS": output / song.name / evaluation.JSON_NAME}
        paths.update({m: output / song.name / BASELINE_DIR / m / evaluation.JSON_NAME for m in METHODS[1:]})
        for method, path in paths.items():
            if path.is_file():
                found[method][song.name] = evaluation.Scores.load(path)
    return {m: s for m, s in found.items() if s}


def aggregate_table(scores: dict[str, dict[str, evaluation.Scores]], names: Sequence[str]):
    """A pandas table: rows (method, source), columns SDR ISR SIR SAR and the number of songs; median over frames
    per song, then over songs (NaN frames ignored)."""
    import pandas as pd

    rows = []
    for method, by_song in scores.items():
        medians = [s.medians() for s in by_song.values()]
        for name in names:
            values = {m: float(np.nanmedian([md[name][m] for md in medians if name in md]))
                      for m in evaluation.METRICS}
            rows.append({"method": method, "source": name, **values, "songs": len(by_song)})
    return pd.DataFrame(rows).set_index(["method", "source"])


def format_table(table, title: str) -> str:
    lines = [title, f"{'method':<9}{'source':<9}" + "".join(f"{m:>8}" for m in evaluation.METRICS) + "   songs"]
    for (method, source), row in table.iterrows():
        lines.append(f"{method:<9}{source:<9}" + "".join(f"{row[m]:>8.2f}" for m in evaluation.METRICS)
                     + f"   {int(row['songs'])}")
    return "\n".join(lines)


def separate_songs(songs: Sequence[Path], restore_paths: Sequence[str], config, output: Path,
                   names: Sequence[str] = ("piano", "violin"), model: str = "ncsn", n_segments: Optional[int] = None,
                   seed: int = 0, batch_size: int = 16, baselines: bool = True, algorithm: str = "wiener",
                   method: str = "frame", progress: bool = True, logger: Optional[logging.Logger] = None,
                   report: bool = True, command: Optional[str] = None, bases: Optional[dict] = None):
    """Separate, invert and score every song not done yet with one BASIS (the priors are loaded and its level loop
    compiled once; songs share the config, so the same segment shape); with ``report`` each song's
    ``report.html`` is written once its baselines are scored (:mod:`separation.report`).

    ``bases``, a dict the caller keeps across calls (e.g. one call per Langevin seed or per folder), holds the BASIS
    built here under its priors, model and config; a later call with the same ones reuses it instead of loading the
    priors and tracing its level loop again. The seed is applied per song, so a reused BASIS gives the same
    estimates as a new one.

    Returns:
        the songs separated by this call (the others were done already).
    """
    from core.config import save_config
    from datasets.data_loader import load_song
    from separation.basis import read_resume_state
    from separation import report as html_report
    from separation.separate import STATE_NAME, SongTask, build_basis, run_fingerprint, separate_song

    logger = logger or logging.getLogger("sepsuite")
    bases = {} if bases is None else bases  # one BASIS for all songs: priors loaded, level loop compiled once
    cache_key = (tuple(restore_paths), model, json.dumps(config.to_dict(), sort_keys=True, default=str))
    done = []
    for number, song_dir in enumerate(songs, start=1):
        folder = output / song_dir.name
        has_gt = all((song_dir / f"{n}.wav").is_file() for n in names)
        if song_done(folder, names, has_gt):
            if not (baselines and has_gt) or baselines_done(folder):
                logger.info("[%d/%d] %s: done already, skipped", number, len(songs), song_dir.name)
                continue
            logger.info("[%d/%d] %s: BASIS done already; scoring the baselines", number, len(songs), song_dir.name)
            params = config.spectrogram_params()
            score_baselines(load_song(song_dir, names, params, config.scale, n_segments), names, folder)
            if report:
                html_report.write_report(folder)
            done.append(song_dir)
            continue
        logger.info("[%d/%d] %s", number, len(songs), song_dir.name)
        task = SongTask.from_song(song_dir, names, config, n_segments, model)
        key = run_fingerprint(restore_paths, model, str(song_dir.resolve()), task.n_mixtures, batch_size, seed,
                              task.config)
        read_resume_state(folder / STATE_NAME, key)  # refused before the folder's config.yml is written
        folder.mkdir(parents=True, exist_ok=True)
        save_config(task.config, folder / CONFIG_NAME)
        if cache_key not in bases:
            bases[cache_key] = build_basis(task, restore_paths, model)
        _, scores = separate_song(task, restore_paths, model, folder, key, seed=seed, batch_size=batch_size,
                                  algorithm=algorithm, method=method, progress=progress, logger=logger,
                                  basis=bases[cache_key], song_dir=song_dir, command=command, report=False)
        if baselines and scores is not None:
            score_baselines(task.song, names, folder)
        elif baselines:
            warn(f"{song_dir.name} has no source wavs: no baselines")
        if report:
            html_report.write_report(folder)
        done.append(song_dir)
    return done


def song_medians(by_song: dict[str, evaluation.Scores]) -> evaluation.Scores:
    """One :class:`Scores` whose 'frames' are the songs' medians: box plots over songs instead of frames."""
    first = next(iter(by_song.values()))
    medians = [s.medians() for s in by_song.values()]
    values = {m: np.array([[md[t][m] for md in medians] for t in first.targets]) for m in evaluation.METRICS}
    return evaluation.Scores(list(first.targets), values)
