"""Benchmark: how well priors separate music and timbres they were not trained on, old and new side by side.

Test pieces of the open dataset (split by piece: never in training) are grouped by kind of music -- Bach chorales,
string-quartet movements (Beethoven, Haydn, Mozart) and, optionally, fiddle tunes with a generated piano
accompaniment (melody and accompaniment, as in a sonata) -- and the first ``--seconds`` of each is rendered with
every timbre family asked for (piano and violin from the same bank, GM programs 0 and 40; each part at -20 dB, the
level the training data use; dry, and/or with ``--effects default`` the gain, EQ tilt, room reverb, velocity and
tempo variation the dataset builder draws per part, seeded by the piece, in rows named ``<timbre>+fx``). Every
prior set separates every excerpt with BASIS (Wiener filter per frame), and BSS Eval v4 scores it next to the
mixture baseline (each source = mixture / 2) and the IRM oracle.

Reported per (kind, timbre) row and per prior set: the SDR of BASIS, the mixture baseline and the IRM for piano and
violin, and the gain of BASIS over the baseline, each the median over 1 s frames of a song, then the mean over songs
(with ``--seeds``, BASIS's per-song SDR is first averaged over the Langevin seeds: on 20 s excerpts one seed can
move a song by several dB; with ``--windows N``, the first ``N * seconds`` of each piece are rendered once and cut
into N consecutive excerpts, each scored as a song, so that one passage does not stand for a whole piece). Which
timbres count as "seen" depends on the prior set: the table names the families,
RESULTS.md says which each set was trained on. A timbre that no prior set ever saw is given with ``--soundfont
PATH`` (a General MIDI .sf2; row ``sf:<stem>``); for leave-one-timbre-out, train a prior set without one family
(``build_midi_dataset.py --piano_timbres`` / ``--violin_timbres``), name the row it never heard with ``--heldout
NAME=ROW``, and read the summary printed under the table: per kind, the gain on that row, the mean gain over the
prior set's other rows (the timbres it heard; dry rows against dry rows, ``+fx`` rows against ``+fx`` rows) and
their difference, with the goals of this work (held-out row >= +4 dB over the baseline, and no more than 1 dB below
the seen rows).

    .venv/bin/python benchmarks/bench_generalisation.py --priors old=data/priors_old new=pretrained \\
        [--kinds chorales quartets] [--songs_per_kind 3] [--timbres fluidr3 csound merlin] [--soundfont X.sf2] \\
        [--seconds 20] [--windows 3] [--effects none default] [--pair salamander=salamander,fluidr3:40] \\
        [--heldout NAME=ROW] [--T 20 --step_lr 5e-5 ...] [--seeds 0 1 2] [--output data/bench_generalisation] \\
        [--shard 1/2]

A prior set is ``NAME=DIR`` with ``DIR/piano`` and ``DIR/violin`` prior folders (as ``pretrained/``); the
separation settings are those of ``DIR/piano/config.yml`` except the sampler keys given as flags (``--T``,
``--step_lr``, ``--start_level``, ...). Everything is
kept in ``--output`` (renders, separations, ``generalisation.csv``); re-running skips what is done, so a run can be
split over two processes with ``--shard i/n`` (by prior set) and tabled by a last run without it. Shards started
together render the same pieces side by side; every file is written under a temporary name of its own process and
renamed when complete, so they do not disturb each other. What made the renders of a row and the separations of a
prior set is recorded in their folders (``settings.json``): a row re-defined under its name (other timbres, effects
or ``--seconds``) or a prior set re-run under its name with another folder or other sampler flags is refused,
naming the difference, instead of tabling old results as new.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import core  # noqa: E402,F401  (quiets TensorFlow's start-up logging)
from core.config import CONFIG_NAME, SAMPLER_KEYS, add_key_arguments, config_overrides  # noqa: E402
from core.errors import UserError, run_main  # noqa: E402

KINDS = {"chorales": ("bach",), "quartets": ("beethoven", "haydn", "mozart"), "tunes": ("ryansMammoth",)}
FAMILIES = ("fluidr3", "csound", "merlin")
SETTINGS_JSON = "settings.json"   # in a render folder and in a prior set's separation folder: what made them
FX_SUFFIX = "+fx"          # a timbre row rendered with the dataset builder's effects: <name>+fx
NAMES = ("piano", "violin")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--priors", nargs="+", required=True, metavar="NAME=DIR",
                        help="prior sets to compare: DIR holds piano/ and violin/ prior folders")
    parser.add_argument("--kinds", nargs="+", default=["chorales", "quartets"], choices=list(KINDS),
                        help="kinds of music (default: chorales quartets; tunes: fiddle tunes with a generated "
                             "piano accompaniment, a sonata-like melody-and-accompaniment texture)")
    parser.add_argument("--songs_per_kind", type=int, default=3, help="test pieces per kind, the first by name (default: 3)")
    parser.add_argument("--pieces", nargs="+", default=None, metavar="KEY",
                        help="these corpus pieces instead (kind taken from the composer), e.g. bach/bwv108.6")
    parser.add_argument("--timbres", nargs="+", default=list(FAMILIES), choices=list(FAMILIES),
                        help=f"timbre families to render with (default: {' '.join(FAMILIES)})")
    parser.add_argument("--soundfont", nargs="*", default=[], metavar="SF2",
                        help="extra General MIDI SoundFonts (timbres never trained on)")
    parser.add_argument("--pair", nargs="*", default=[], metavar="NAME=PIANO,VIOLIN",
                        help="extra timbre conditions given as two timbre specs, e.g. "
                             "salamander=salamander,csound:40 or p2=csound:2,merlin:40")
    parser.add_argument("--heldout", nargs="*", default=[], metavar="NAME=ROW",
                        help="prior set NAME never heard the timbre of row ROW (e.g. losal=salamander); under the "
                             "table, that row is compared with the mean of the set's other rows, per kind")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each excerpt from the start, s (default: 20)")
    parser.add_argument("--windows", type=int, default=1, metavar="N",
                        help="N consecutive excerpts of --seconds per piece (the first N * seconds rendered once, "
                             "then cut; a shorter piece gives the whole windows it has, at least one), each scored "
                             "as a song: more of every test piece in the means (default: 1, the first --seconds)")
    parser.add_argument("--effects", nargs="+", choices=["none", "default"], default=["none"],
                        help="render the excerpts dry (none) and/or with the dataset builder's default per-part "
                             "effects (gain, EQ tilt, room reverb, velocity and tempo jitter; rows <timbre>+fx) "
                             "(default: none)")
    add_key_arguments(parser.add_argument_group("BASIS sampler (default: each prior set's piano/config.yml)"),
                      SAMPLER_KEYS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="SEED",
                        help="Langevin seeds: every excerpt is separated once per seed and BASIS's per-song SDR "
                             "averaged over them, to tell a prior's effect from the sampler's noise (default: 0; "
                             "seed s > 0 is kept in separated/NAME@seed<s>)")
    parser.add_argument("--output", default="data/bench_generalisation", help="work and result folder (default: data/bench_generalisation)")
    parser.add_argument("--shard", default=None, metavar="i/n", help="only the i-th of n prior sets (then table all)")
    parser.add_argument("--table_only", action="store_true",
                        help="separate nothing: table what earlier runs (or shards still running) have finished")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


@dataclasses.dataclass(frozen=True)
class Condition:
    """One timbre condition: a row name, the piano and violin timbre specs and the effects preset."""

    name: str
    piano: str
    violin: str
    effects: str = "none"


def conditions(families, soundfonts, pairs=(), effects=("none",)) -> list[Condition]:
    """The timbre conditions: one per family (programs 0 and 40), per extra SoundFont, and per NAME=PIANO,VIOLIN,
    for each effects preset: dry (``"none"``) and/or rendered with ``"default"`` effects and named ``<name>+fx``."""
    from datasets import timbres

    out = [Condition(f, f"{f}:0", f"{f}:40") for f in families]
    for path in soundfonts:
        out.append(Condition(f"sf:{Path(path).stem}", f"{Path(path).resolve()}:0", f"{Path(path).resolve()}:40"))
    for item in pairs:
        name, _, specs = item.partition("=")
        piano, _, violin = specs.partition(",")
        if not name or not piano or not violin:
            raise UserError(f"--pair {item!r} is not NAME=PIANO,VIOLIN (e.g. salamander=salamander,csound:40)")
        timbres.parse_timbres([piano], "piano"), timbres.parse_timbres([violin], "violin")
        out.append(Condition(name, timbres.resolved_spec(piano), timbres.resolved_spec(violin)))
    return [c if preset == "none" else dataclasses.replace(c, name=f"{c.name}{FX_SUFFIX}", effects=preset)
            for preset in dict.fromkeys(effects) for c in out]


def choose_pieces(kinds, per_kind: int, keys=None, split: str = "test") -> list[tuple[str, object]]:
    """(kind, CorpusPiece) of ``split``: the first ``per_kind`` pieces by key of each kind, or ``keys``."""
    from datasets import midi_dataset as md

    if keys:
        kind_of = {c: k for k, composers in KINDS.items() for c in composers}
        pieces = md.find_corpus_pieces(keys)
        for piece in pieces:
            if piece.composer not in kind_of:
                raise UserError(f"{piece.key}: its composer is not one of the kinds {', '.join(KINDS)}")
        return [(kind_of[p.composer], p) for p in pieces]
    chosen = []
    for kind in kinds:
        found = [p for p in md.list_corpus_pieces(KINDS[kind])
                 if md.split_of(p.key, md.RenderOptions().test_fraction) == split]
        chosen.extend((kind, p) for p in found[:per_kind])
    return chosen


def folder_name(condition: str, windows: int = 1, seconds: float = 20.0) -> str:
    """The folder of a timbre condition's renders and separations (``sf:x+fx`` -> ``sf_x_fx``); with more than one
    window per piece, ``<name>_<windows>x<seconds>s`` (e.g. ``merlin_3x20s``), so that excerpts cut from a longer
    render are never mistaken for the first-``seconds`` renders of the same output folder."""
    name = condition.replace(":", "_").replace("+", "_")
    return name if windows == 1 else f"{name}_{windows}x{seconds:g}s"


def cut_windows(song: Path, folder: Path, seconds: float, windows: int) -> list[Path]:
    """Cut a rendered song into up to ``windows`` consecutive excerpts of ``seconds``, each a song folder
    ``folder/<song name>_w<i>`` (i from 1) with the three wavs (int16, so mix = piano + violin stays exact).

    Only whole windows are kept (a song shorter than one window is kept whole as ``_w1``); windows already cut are
    not written again, and when all are cut the song's wavs are not read (only the mixture's length). Returns the
    window folders, in order."""
    import soundfile as sf

    from datasets import midi_dataset as md

    info = sf.info(str(song / "mix.wav"))
    length = int(round(seconds * info.samplerate))
    count = max(1, min(windows, info.frames // length))
    out = [folder / f"{song.name}_w{i + 1}" for i in range(count)]
    missing = [i for i, window in enumerate(out)
               if not all((window / f"{source}.wav").is_file() for source in md.SOURCES)]
    if missing:
        for source in md.SOURCES:
            audio, sample_rate = sf.read(str(song / f"{source}.wav"), dtype="int16")
            for i in missing:
                md.write_wav_int16(out[i] / f"{source}.wav", audio[i * length:(i + 1) * length], sample_rate)
    return out


def render(pieces, condition: Condition, seconds: float, root: Path,
           rendered_only: bool = False, windows: int = 1) -> list[tuple[str, Path]]:
    """Render every piece with one timbre condition (skipping those already rendered); (kind, song folder), one per
    piece, or with ``windows`` > 1 one per window of ``seconds`` (:func:`cut_windows`) of a ``windows * seconds``
    render. With ``rendered_only``, render nothing and return the pieces already rendered."""
    from core.rundir import check_run_settings
    from datasets import midi_dataset as md
    from datasets import timbres

    options = md.RenderOptions(piano_timbres=(condition.piano,), violin_timbres=(condition.violin,),
                               max_piece_minutes=windows * seconds / 60.0, part_level_db=-20.0, accompany=True,
                               effects=timbres.effect_options(condition.effects))
    out = root / "renders" / folder_name(condition.name, windows, seconds)
    if not rendered_only:
        md.check_render_options(options)
        # a row re-defined under the same name (other timbres, effects or length) would reuse the old renders
        check_run_settings(out / SETTINGS_JSON, {"piano": condition.piano, "violin": condition.violin,
                                                 "effects": condition.effects, "seconds": windows * seconds},
                           "name the row otherwise (--pair NAME=...) or give another --output")
    songs = []
    for kind, piece in pieces:
        split = md.split_of(piece.key, options.test_fraction)
        if not md.piece_is_done(out, split, piece.name):
            if rendered_only:
                continue
            result = md.build_piece(piece, str(out), options)
            if result["status"] != "ok":
                logging.getLogger("sepsuite").warning("skipped %s: %s", piece.key, result["reason"])
                continue
        song = md.song_dir(out, split, piece.name)
        if windows == 1:
            songs.append((kind, song))
        else:
            songs.extend((kind, w) for w in cut_windows(song, out / "windows" / split, seconds, windows))
    return songs


def check_prior_set(folder: Path, given: str) -> Path:
    """``folder`` if it holds a piano and a violin prior folder (each with its config.yml); else a one-line error
    naming the ``--priors`` value ``given``."""
    for source in NAMES:
        if not (folder / source / CONFIG_NAME).is_file():
            raise UserError(f"--priors {given}: {folder / source} is not a prior folder with {CONFIG_NAME}")
    return folder


def separation_settings(prior_dir: Path, overrides: dict) -> dict:
    """What a prior set's separations depend on: its folder (absolute) and the sampler keys of its
    ``piano/config.yml`` with ``overrides`` applied."""
    from core.config import load_config, sampler_settings

    config = load_config(prior_dir / "piano" / CONFIG_NAME, overrides)
    return {"priors": str(prior_dir.resolve()), **sampler_settings(config)}


def separate(prior_dir: Path, songs, output: Path, seconds: float, overrides: dict, progress: bool,
             seed: int = 0, bases: dict | None = None) -> None:
    """Separate and score the songs with one prior set, the sampler keys in ``overrides`` and the Langevin ``seed``
    (songs done already are skipped); ``bases`` keeps the prior set's BASIS for its other rows and seeds."""
    from core.config import load_config
    from separation import song_folders

    config = load_config(prior_dir / "piano" / CONFIG_NAME, overrides)
    n_segments = max(1, math.ceil(seconds * config.sample_rate / config.segment_samples - 1e-9))
    paths = [str(prior_dir / name) for name in NAMES]
    folders = [song for _, song in songs]
    song_folders.separate_songs(folders, paths, config, output, NAMES, "ncsn", n_segments, seed=seed,
                                progress=progress, bases=bases)


def finished_scores(output: Path, songs) -> dict:
    """{song name: {method: Scores}} of the songs already scored in ``output`` (none if it does not exist)."""
    from separation import song_folders

    folders = [song for _, song in songs]
    scores = song_folders.collect_scores(output, folders) if output.is_dir() else {}
    return {s.name: {m: scores[m][s.name] for m in scores if s.name in scores[m]} for s in folders}


def prior_set_folder(output: Path, name: str, seed: int) -> Path:
    """Where prior set ``name`` keeps its separations with one Langevin seed (a folder per timbre row inside)."""
    return output / "separated" / (name if seed == 0 else f"{name}@seed{seed}")


def separated_folder(output: Path, name: str, condition: str, seed: int, windows: int = 1,
                     seconds: float = 20.0) -> Path:
    """Where prior set ``name`` keeps its separations of one timbre row with one Langevin seed (and its windows)."""
    return prior_set_folder(output, name, seed) / folder_name(condition, windows, seconds)


def song_sdrs(scores_by_seed: list[dict]) -> dict:
    """{song: {method: {source: SDR}}}, the per-song median SDR over 1 s frames, from one :func:`finished_scores`
    dict per seed: BASIS averaged over the seeds (a song counts once every seed has scored it), the mixture and
    IRM baselines (which do not depend on the seed) from the first."""
    import numpy as np

    def sdr(scores) -> dict:
        medians = scores.medians()                     # one pandas median over the frames per Scores
        return {source: medians[source]["SDR"] for source in NAMES}

    first, out = scores_by_seed[0], {}
    for song, by_method in first.items():
        if not all("BASIS" in scores.get(song, {}) for scores in scores_by_seed):
            out[song] = {}
            continue
        out[song] = {method: sdr(by_method[method]) for method in by_method if method != "BASIS"}
        basis = [sdr(scores[song]["BASIS"]) for scores in scores_by_seed]
        out[song]["BASIS"] = {source: float(np.mean([seed[source] for seed in basis])) for source in NAMES}
    return out


def table_rows(results: dict, songs_by_condition: dict) -> list[dict]:
    """One row per (prior set, kind, timbre): mean over songs of the per-song SDR (:func:`song_sdrs`) per method
    and source."""
    import numpy as np

    rows = []
    for prior_name, by_condition in results.items():
        for condition, by_song in by_condition.items():
            kinds = {}
            for kind, song in songs_by_condition[condition]:
                kinds.setdefault(kind, []).append(song.name)
            for kind, names in [*kinds.items(), ("all", [n for v in kinds.values() for n in v])]:
                names = [n for n in names if "BASIS" in by_song.get(n, {})]       # separated and scored
                if not names:
                    continue
                row = {"priors": prior_name, "kind": kind, "timbre": condition, "songs": len(names)}
                for method in ("BASIS", "mixture", "IRM"):
                    for source in NAMES:
                        values = [by_song[n][method][source] for n in names if method in by_song.get(n, {})]
                        values = [v for v in values if np.isfinite(v)]
                        row[f"{method}_{source}"] = float(np.mean(values)) if values else float("nan")
                for source in NAMES:
                    row[f"gain_{source}"] = row[f"BASIS_{source}"] - row[f"mixture_{source}"]
                rows.append(row)
    return rows


def _widths(rows: list[dict], timbre_key: str) -> tuple[int, int]:
    """Column widths of the prior-set and timbre names: at least 10 and 12, else the longest name plus a space."""
    return (max([10] + [len(r["priors"]) + 1 for r in rows]), max([12] + [len(r[timbre_key]) + 1 for r in rows]))


def _pair(row: dict, key: str, sign: str = "") -> str:
    """``row[key_piano]/row[key_violin]`` in dB with two decimals (``sign="+"``: signed)."""
    return f"{row[key + '_piano']:{sign}6.2f}/{row[key + '_violin']:<{sign}6.2f}"


def format_rows(rows: list[dict]) -> str:
    wp, wt = _widths(rows, "timbre")
    header = (f"{'priors':<{wp}}{'kind':<10}{'timbre':<{wt}}{'songs':>5}  {'gain p/v':>13}  {'BASIS p/v':>13}  "
              f"{'mixture p/v':>13}  {'IRM p/v':>13}")
    lines = ["SDR (dB): median over 1 s frames, mean over songs; gain = BASIS - mixture baseline", header]
    for r in rows:
        lines.append(f"{r['priors']:<{wp}}{r['kind']:<10}{r['timbre']:<{wt}}{r['songs']:>5}  {_pair(r, 'gain'):>13}  "
                     f"{_pair(r, 'BASIS'):>13}  {_pair(r, 'mixture'):>13}  {_pair(r, 'IRM'):>13}")
    return "\n".join(lines)


HELDOUT_GAIN_DB = 4.0     # goal: a timbre never heard, at least this far over the mixture baseline, both sources
HELDOUT_GAP_DB = 1.0      # goal: a timbre never heard, no more than this below the timbres heard


def parse_heldout(items, prior_names, condition_names) -> dict[str, set[str]]:
    """``["NAME=ROW", ...]`` -> {prior set: {rows it never heard}}; unknown names are one-line errors."""
    heldout: dict[str, set[str]] = {}
    for item in items:
        name, sep, row = item.partition("=")
        if not sep or name not in prior_names or row not in condition_names:
            raise UserError(f"--heldout {item!r}: give NAME=ROW with NAME one of --priors "
                            f"({', '.join(prior_names)}) and ROW one of the timbre rows ({', '.join(condition_names)})")
        heldout.setdefault(name, set()).add(row)
    return heldout


def heldout_rows(rows: list[dict], heldout: dict[str, set[str]]) -> list[dict]:
    """Per (prior set, held-out row, kind): the gain on the held-out row, the mean gain over the set's seen rows of
    the same kind and the same effects (dry or ``+fx``), and the held-out minus seen difference (dB, per source)."""
    out = []
    for r in rows:
        if r["timbre"] not in heldout.get(r["priors"], ()):
            continue
        fx = r["timbre"].endswith(FX_SUFFIX)
        seen = [s for s in rows if s["priors"] == r["priors"] and s["kind"] == r["kind"]
                and s["timbre"] not in heldout[r["priors"]] and s["timbre"].endswith(FX_SUFFIX) == fx]
        row = {"priors": r["priors"], "kind": r["kind"], "heldout": r["timbre"], "songs": r["songs"],
               "seen": " ".join(s["timbre"] for s in seen)}
        for source in NAMES:
            row[f"heldout_{source}"] = r[f"gain_{source}"]
            row[f"seen_{source}"] = (sum(s[f"gain_{source}"] for s in seen) / len(seen)) if seen else float("nan")
            row[f"gap_{source}"] = row[f"heldout_{source}"] - row[f"seen_{source}"]
        out.append(row)
    return out


def format_heldout(rows: list[dict]) -> str:
    """The held-out summary with the two goals' verdicts (a missing seen row leaves the gap unjudged)."""
    wp, wt = _widths(rows, "heldout")
    lines = [f"Held-out timbres: gain over the baseline on the row the priors never heard, against the mean gain of "
             f"their other rows (goals: >= +{HELDOUT_GAIN_DB:g} dB, gap >= -{HELDOUT_GAP_DB:g} dB, both sources)",
             f"{'priors':<{wp}}{'kind':<10}{'held out':<{wt}}{'songs':>5}  {'held out p/v':>13}  {'seen p/v':>13}  "
             f"{'gap p/v':>13}  verdicts (+{HELDOUT_GAIN_DB:g} dB, gap)  seen rows"]
    for r in rows:
        gain_met = all(r[f"heldout_{s}"] >= HELDOUT_GAIN_DB for s in NAMES)
        gaps = [r[f"gap_{s}"] for s in NAMES]
        gap = "unjudged" if any(math.isnan(g) for g in gaps) else ("met" if min(gaps) >= -HELDOUT_GAP_DB else "missed")
        lines.append(f"{r['priors']:<{wp}}{r['kind']:<10}{r['heldout']:<{wt}}{r['songs']:>5}  "
                     f"{_pair(r, 'heldout', '+'):>13}  {_pair(r, 'seen', '+'):>13}  {_pair(r, 'gap', '+'):>13}  "
                     f"{'met' if gain_met else 'missed':>6}, {gap:<8}  {r['seen'] or '-'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import pandas as pd

    from core.rundir import check_run_settings, setup_logging
    from datasets.scores import quiet_music21
    from separation.song_folders import parse_shard

    prior_sets = {}
    for item in args.priors:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise UserError(f"--priors {item!r} is not NAME=DIR (e.g. new=pretrained)")
        prior_sets[name] = check_prior_set(Path(folder), item)
    if args.seconds <= 0 or args.songs_per_kind < 1 or args.windows < 1:
        raise UserError("--seconds, --songs_per_kind and --windows must be positive")
    if min(args.seeds) < 0 or len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds {' '.join(map(str, args.seeds))}: give distinct seeds >= 0 (e.g. --seeds 0 1 2)")
    # the timbre rows and --heldout are checked before the output folder is made and the corpus is listed
    timbre_rows = conditions(args.timbres, args.soundfont, args.pair, args.effects)
    heldout = parse_heldout(args.heldout, list(prior_sets), [c.name for c in timbre_rows])
    index, count = parse_shard(args.shard)
    mine = [] if args.table_only else list(prior_sets)[index - 1::count]
    output = Path(args.output)
    logger = setup_logging(output)
    quiet_music21()
    # a prior set re-run under its name with other priors or sampler flags would reuse its old separations
    for name in mine:
        settings = separation_settings(prior_sets[name], config_overrides(args))
        for seed in args.seeds:
            check_run_settings(prior_set_folder(output, name, seed) / SETTINGS_JSON, settings,
                               f"name the prior set otherwise (--priors OTHER={prior_sets[name]}) or give the "
                               "same sampler flags")
    pieces = choose_pieces(args.kinds, args.songs_per_kind, args.pieces)
    logger.info("pieces: %s", ", ".join(f"{p.key} ({k})" for k, p in pieces))
    songs_by_condition = {c.name: render(pieces, c, args.seconds, output, args.table_only, args.windows)
                          for c in timbre_rows}
    results = {}
    for name, folder in prior_sets.items():
        results[name], bases = {}, {}  # one BASIS per prior set: loaded and traced once for every row and seed
        for condition, songs in songs_by_condition.items():
            by_seed = []
            for seed in args.seeds:
                out = separated_folder(output, name, condition, seed, args.windows, args.seconds)
                if name in mine:
                    logger.info("priors %s, timbre %s, seed %d: %d songs", name, condition, seed, len(songs))
                    separate(folder, songs, out, args.seconds, config_overrides(args), not args.no_progress, seed,
                             bases)
                # this run's separations, or what another shard (or an earlier run) has finished
                by_seed.append(finished_scores(out, songs))
            results[name][condition] = song_sdrs(by_seed)
    rows = table_rows(results, songs_by_condition)
    pd.DataFrame(rows).to_csv(output / "generalisation.csv", index=False)
    (output / "generalisation.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(format_rows(rows))
    if heldout:
        summary = heldout_rows(rows, heldout)
        pd.DataFrame(summary).to_csv(output / "heldout.csv", index=False)
        print("\n" + format_heldout(summary))
    return 0


if __name__ == "__main__":
    run_main(main)
