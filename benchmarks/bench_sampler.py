"""Benchmark: BASIS quality against network evaluations and wall time, for today's sampler and its options.

Every sampler setting (config overrides of the BASIS keys: T, step_lr, start_level, basis_levels, init, n_chains,
denoise, consistency) separates the same excerpts of open-dataset pieces with the same priors, one setting after the
other in one run; the estimates are turned into audio with the Wiener filter of the mixture per frame and scored
with BSS Eval v4 next to the mixture baseline. Settings are chosen on *training* pieces (``--split train``, the
default) and the chosen one is checked once on test pieces (``--split test --only today chosen``).

Reported per setting: network evaluations of each prior per segment, the real-time factor of BASIS alone (its
seconds / the audio's seconds, the priors loaded and the level loop traced before the clock starts) and of BASIS
plus inversion and scoring, and the SDR and SAR of piano and violin (median over 1 s frames of a song, then the
mean over songs), with the mixture baseline's SDR for reference. ``sampler.png`` draws SDR against evaluations and
against the real-time factor.

    .venv/bin/python benchmarks/bench_sampler.py [--priors pretrained] [--split train] [--songs_per_kind 2]
        [--seconds 10] [--timbre fluidr3] [--only today fast ...] [--setting NAME=key=value,key=value ...]
        [--output data/bench_sampler]

Everything is kept in ``--output`` (renders, separations, ``sampler_<split>.csv``); re-running skips what is done.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import core  # noqa: E402,F401  (quiets TensorFlow's start-up logging)
from core.config import CONFIG_NAME, SAMPLER_KEYS  # noqa: E402
from core.errors import UserError, run_main  # noqa: E402

NAMES = ("piano", "violin")

#: the settings compared by default, each complete (so that they do not depend on the priors' config): today's
#: sampler (the 2020 suite's, at T = 20) first, then its options. Name parts: mixN = init mixture with start_level N,
#: LN = basis_levels N, TN = steps per level, lr = step_lr, step / final = consistency, tX = temperature X,
#: uniform = a start from uniform noise at sigma_1 (today's). "fast" is the shipped default.
TODAY = {"T": 20, "step_lr": 5e-5, "start_level": 0, "basis_levels": None, "init": "uniform", "n_chains": 1,
         "denoise": False, "temperature": 1.0, "consistency": "none"}
FAST = {**TODAY, "init": "mixture", "start_level": 3, "basis_levels": 4, "T": 6, "step_lr": 2e-4,
        "consistency": "step", "temperature": 0.1}
MIX3_T5 = {**TODAY, "init": "mixture", "start_level": 3, "T": 5, "step_lr": 1e-4}
SETTINGS = {
    "today": TODAY,
    "T5": {**TODAY, "T": 5},
    "T5_lr2e-4": {**TODAY, "T": 5, "step_lr": 2e-4},
    "mix3_T5_lr1e-4": MIX3_T5,
    "mix3_T5_lr1e-4_2chains": {**MIX3_T5, "n_chains": 2},
    "mix3_T5_lr1e-4_denoise": {**MIX3_T5, "denoise": True},
    "mix3_T5_lr1e-4_final": {**MIX3_T5, "consistency": "final"},
    "mix3_T5_lr1e-4_step": {**MIX3_T5, "consistency": "step"},
    "mix3_T5_lr2e-4_step": {**MIX3_T5, "consistency": "step", "step_lr": 2e-4},
    "mix3_T5_lr2e-4_step_t0.3": {**MIX3_T5, "consistency": "step", "step_lr": 2e-4, "temperature": 0.3},
    "mix2_L4_T6_lr2e-4_step_t0.1": {**FAST, "start_level": 2},
    "mix4_L4_T6_lr2e-4_step_t0.1": {**FAST, "start_level": 4},
    "uniform_L4_T6_lr2e-4_step_t0.1": {**FAST, "init": "uniform", "start_level": 0},
    "mix3_L3_T6_lr2e-4_step_t0.1": {**FAST, "basis_levels": 3},
    "mix3_L5_T8_lr2e-4_step_t0.1": {**FAST, "basis_levels": 5, "T": 8},
    "mix3_L4_T4_lr3e-4_step_t0.1": {**FAST, "T": 4, "step_lr": 3e-4},
    "mix3_L4_T6_lr3e-4_step_t0.1": {**FAST, "step_lr": 3e-4},
    "mix3_L4_T6_lr2e-4_step_t0.3": {**FAST, "temperature": 0.3},
    "mix3_L4_T6_lr2e-4_step_t0": {**FAST, "temperature": 0.0},
    "fast": FAST,
    "fast_2chains": {**FAST, "n_chains": 2},
    "fast_denoise": {**FAST, "denoise": True},
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--priors", default="pretrained", help="folder with piano/ and violin/ prior folders")
    parser.add_argument("--split", choices=("train", "test"), default="train",
                        help="pieces to separate: choose settings on train, check the choice once on test")
    parser.add_argument("--kinds", nargs="+", default=["chorales", "quartets"], help="kinds of music")
    parser.add_argument("--songs_per_kind", type=int, default=2, help="pieces per kind, the first by name")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each excerpt from the start, s")
    parser.add_argument("--timbre", default="fluidr3", help="timbre family to render with (fluidr3, csound, merlin)")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                        help=f"only these settings (built in: {', '.join(SETTINGS)}, or given by --setting)")
    parser.add_argument("--setting", nargs="*", default=[], metavar="NAME=key=value,...",
                        help="extra settings, e.g. fast=init=mixture,start_level=3,T=5")
    parser.add_argument("--output", default="data/bench_sampler", help="work and result folder")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def parse_settings(items) -> dict[str, dict]:
    """--setting NAME=key=value,key=value -> {NAME: {key: value}} (values read as YAML, checked by the config
    loader)."""
    import yaml

    out = {}
    for item in items:
        name, _, rest = item.partition("=")
        pairs = [p.partition("=") for p in rest.split(",") if p]
        if not name or not pairs or any(not k or not v for k, _, v in pairs):
            raise UserError(f"--setting {item!r} is not NAME=key=value,key=value (e.g. fast=T=5,init=mixture)")
        unknown = [k for k, _, _ in pairs if k not in SAMPLER_KEYS]
        if unknown:
            raise UserError(f"--setting {name}: {', '.join(unknown)} is not a sampler key ({', '.join(SAMPLER_KEYS)})")
        out[name] = {k: yaml.safe_load(v) for k, _, v in pairs}
    return out


def run_setting(name: str, overrides: dict, prior_dir: Path, songs, output: Path, seconds: float,
                progress: bool) -> None:
    """Separate, invert and score every song with one setting (songs done already are skipped); the timings go
    into each song folder's ``timing.json``."""
    from core.config import load_config
    from separation.evaluation import JSON_NAME
    from separation.separate import SongTask, build_basis, run_fingerprint, separate_song
    from separation.song_folders import BASELINE_DIR, score_baselines

    config = load_config(prior_dir / "piano" / CONFIG_NAME, overrides)
    n_segments = max(1, math.ceil(seconds * config.sample_rate / config.segment_samples - 1e-9))
    paths = [str(prior_dir / n) for n in NAMES]
    basis = None
    for song in songs:
        folder = output / name / song.name
        if (folder / "timing.json").is_file() and (folder / JSON_NAME).is_file():
            continue
        task = SongTask.from_song(song, NAMES, config, n_segments, "ncsn")
        if basis is None:
            basis = build_basis(task, paths, "ncsn")
            print(f"{name}: {basis.describe()}", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        key = run_fingerprint(paths, "ncsn", str(song.resolve()), task.n_mixtures, 16, 0, task.config)
        (folder / "basis_state.npz").unlink(missing_ok=True)
        if basis.tracing_count == 0:  # trace the level loop before the clock starts (once per setting)
            basis.run_level(basis.start(task.mixture, 0, task.config.init, -task.scaling.offset), task.mixture,
                            basis.levels[0], 0, 0, 1)
            if basis.denoise or basis.n_chains > 1 or basis.consistency != "none":
                basis.finish(basis.start(task.mixture, 0, task.config.init, -task.scaling.offset), task.mixture)
        start = time.perf_counter()
        result, _ = separate_song(task, paths, "ncsn", folder, key, basis=basis, progress=progress)
        total = time.perf_counter() - start
        audio_seconds = task.song.n_samples / task.song.params.sample_rate
        (folder / "timing.json").write_text(json.dumps(
            {"basis_seconds": result.seconds, "total_seconds": total, "audio_seconds": audio_seconds,
             "evaluations": basis.evaluations, "segments": task.n_mixtures}) + "\n")
        baselines = output / "baselines" / song.name
        if not (baselines / BASELINE_DIR / "mixture" / JSON_NAME).is_file():
            score_baselines(task.song, NAMES, baselines)


def table(output: Path, names, songs) -> list[dict]:
    """One row per setting: evaluations, real-time factors and mean-over-songs of the median-over-frames SDR/SAR."""
    import numpy as np

    from separation.evaluation import JSON_NAME, Scores
    from separation.song_folders import BASELINE_DIR

    rows = []
    for name in names:
        timings, medians, baseline = [], [], []
        for song in songs:
            folder = output / name / song.name
            if not (folder / "timing.json").is_file():
                continue
            timings.append(json.loads((folder / "timing.json").read_text()))
            medians.append(Scores.load(folder / JSON_NAME).medians())
            path = output / "baselines" / song.name / BASELINE_DIR / "mixture" / JSON_NAME
            if path.is_file():
                baseline.append(Scores.load(path).medians())
        if not timings:
            continue
        audio = sum(t["audio_seconds"] for t in timings)
        row = {"setting": name, "songs": len(timings), "evaluations": timings[0]["evaluations"],
               "rtf_basis": sum(t["basis_seconds"] for t in timings) / audio,
               "rtf_total": sum(t["total_seconds"] for t in timings) / audio}
        for source in NAMES:
            for metric in ("SDR", "SAR"):
                row[f"{metric}_{source}"] = float(np.nanmean([m[source][metric] for m in medians]))
            row[f"mixture_SDR_{source}"] = float(np.nanmean([m[source]["SDR"] for m in baseline]))
        rows.append(row)
    return rows


def format_rows(rows) -> str:
    lines = ["SDR / SAR (dB): BASIS + Wiener filter, median over 1 s frames, mean over songs; RTF = seconds per "
             "second of audio",
             f"{'setting':<32}{'evals':>6}{'RTF BASIS':>10}{'RTF all':>9}{'SDR piano':>10}{'SDR violin':>11}"
             f"{'SAR piano':>10}{'SAR violin':>11}"]
    for r in rows:
        lines.append(f"{r['setting']:<32}{r['evaluations']:>6}{r['rtf_basis']:>10.2f}{r['rtf_total']:>9.2f}"
                     f"{r['SDR_piano']:>10.2f}{r['SDR_violin']:>11.2f}{r['SAR_piano']:>10.2f}{r['SAR_violin']:>11.2f}")
    if rows:
        lines.append(f"{'mixture baseline':<32}{0:>6}{'':>10}{'':>9}{rows[0]['mixture_SDR_piano']:>10.2f}"
                     f"{rows[0]['mixture_SDR_violin']:>11.2f}")
    return "\n".join(lines)


def pareto(rows, key: str) -> list[dict]:
    """The rows no other row beats on both ``key`` (lower is better) and the mean SDR of the sources, by ``key``."""
    def score(r):
        return np.mean([r[f"SDR_{source}"] for source in NAMES])

    import numpy as np

    ordered = sorted(rows, key=lambda r: (r[key], -score(r)))
    front, best = [], -np.inf
    for r in ordered:
        if score(r) > best:
            front.append(r)
            best = score(r)
    return front


def plot(rows, path: Path, title: str) -> None:
    """The mean SDR of the sources against evaluations per segment and against the real-time factor of BASIS: one
    dot per setting, the best-for-the-cost settings joined and named (with "today" and "fast")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import ScalarFormatter

    def score(r):
        return np.mean([r[f"SDR_{source}"] for source in NAMES])

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, key, label in ((axes[0], "evaluations", "network evaluations per prior and segment"),
                           (axes[1], "rtf_basis", "real-time factor of BASIS (2-core CPU)")):
        ax.scatter([r[key] for r in rows], [score(r) for r in rows], color="tab:blue", s=18, label="setting")
        front = pareto(rows, key)
        ax.plot([r[key] for r in front], [score(r) for r in front], color="tab:orange", lw=1.2,
                label="best for the cost")
        named = {r["setting"]: r for r in front}
        named.update({r["setting"]: r for r in rows if r["setting"] in ("today", "fast")})
        for i, r in enumerate(sorted(named.values(), key=lambda r: r[key])):
            ax.annotate(r["setting"], (r[key], score(r)), fontsize=7, xytext=(6, (-16, -36, 8)[i % 3]),
                        textcoords="offset points", arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "grey"})
        if rows:
            ax.axhline(np.mean([r[f"mixture_SDR_{s}"] for s in NAMES for r in rows[:1]]), color="grey", lw=1,
                       ls=":", label="mixture baseline")
        ax.set_xscale("log")
        ax.minorticks_off()
        ticks = [t for t in ((10, 16, 24, 35, 50, 100, 200, 400) if key == "evaluations" else
                             (0.1, 0.2, 0.3, 0.5, 1, 2, 4)) if min(r[key] for r in rows) / 1.5 <= t <= max(
                                 r[key] for r in rows) * 1.5] if rows else []
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    if rows:
        axes[1].axvline(1.0, color="grey", ls="--", lw=1)
    axes[0].set_ylabel("SDR, mean of piano and violin (dB)")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    import pandas as pd

    from benchmarks.bench_generalisation import Condition, check_prior_set, choose_pieces, render
    from core.rundir import setup_logging
    from datasets.scores import quiet_music21

    settings = {**SETTINGS, **parse_settings(args.setting)}
    names = args.only or list(settings)
    unknown = [n for n in names if n not in settings]
    if unknown:
        raise UserError(f"unknown setting {unknown[0]!r}; built in: {', '.join(SETTINGS)} (or give it with --setting)")
    prior_dir = check_prior_set(Path(args.priors), args.priors)
    output = Path(args.output)
    setup_logging(output)
    quiet_music21()
    pieces = choose_pieces(args.kinds, args.songs_per_kind, split=args.split)
    condition = Condition(args.timbre, f"{args.timbre}:0", f"{args.timbre}:40")
    songs = [song for _, song in render(pieces, condition, args.seconds, output / args.split)]
    print(f"{len(songs)} {args.split} excerpts of {args.seconds:g} s: {', '.join(s.name for s in songs)}", flush=True)
    for name in names:
        run_setting(name, settings[name], prior_dir, songs, output / args.split, args.seconds,
                    not args.no_progress)
    rows = table(output / args.split, names, songs)
    pd.DataFrame(rows).to_csv(output / f"sampler_{args.split}.csv", index=False)
    print(format_rows(rows))
    plot(rows, output / f"sampler_{args.split}.png",
         f"BASIS sampler settings on {len(songs)} {args.split} excerpts of {args.seconds:g} s ({args.timbre})")
    return 0


if __name__ == "__main__":
    run_main(main)
