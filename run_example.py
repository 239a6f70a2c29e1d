"""The built-in example: separate a piano/violin song with the shipped priors, hear it, and read the scores.

    python run_example.py [--output example_output] [--seconds 15] [--T N --n_chains N ...]

Steps (each is a script or module you can also run yourself; the commands are printed as they run):

1. ``datasets/build_midi_dataset.py`` renders a test piece of the open dataset (a Bach chorale that the shipped
   priors never saw) as violin (top voice) + piano (other voices) with FluidSynth; its first ``--seconds`` become the
   song folder ``OUTPUT/<song>/song/`` (mix.wav, piano.wav, violin.wav);
2. BASIS separates the mixture with the two NCSN priors in ``pretrained/`` (progress bar), the estimates are turned
   into audio with the Wiener filter of the mixture per frame, and BSS Eval v4 scores them next to the mixture
   baseline (each source = mixture / 2) and the IRM oracle -- as ``separate_songs.py`` does for a folder of songs.

Written to ``OUTPUT/<song>/``: ``piano.wav``, ``violin.wav``, ``spectrograms.png`` (ground truth vs estimate),
``scores.png`` (box plots of the three methods), ``metrics.json`` / ``metrics.csv`` (BASIS), ``baselines/`` (the
baseline and oracle wavs and scores), ``results.npz``; the table is printed and saved as ``OUTPUT/scores.csv``.
Re-running skips what is done (``--overwrite`` starts again).
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import core  # noqa: F401
from core.config import CONFIG_NAME, SAMPLER_KEYS, add_key_arguments, config_overrides
from core.errors import UserError, run_main

ROOT = Path(__file__).resolve().parent
PIECE = "bach/bwv108.6"           # a test piece of the open dataset (split by piece: never in the priors' training)
PRIORS = (ROOT / "pretrained" / "piano", ROOT / "pretrained" / "violin")


def run_step(title: str, args: list[str]) -> None:
    """Run one of the suite's scripts with this interpreter, showing the command; fail with its message."""
    command = [sys.executable, *args]
    print(f"\n== {title}\n$ {shlex.join(['python', *args])}", flush=True)
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        raise UserError(f"step '{title}' failed (see its message above)")


def make_song(rendered: Path, song: Path, seconds: float) -> None:
    """Copy the first ``seconds`` of a rendered song folder's mix, piano and violin into ``song``."""
    import soundfile as sf

    song.mkdir(parents=True, exist_ok=True)
    for name in ("mix", "piano", "violin"):
        audio, rate = sf.read(str(rendered / f"{name}.wav"), dtype="float32")
        sf.write(str(song / f"{name}.wav"), audio[: int(seconds * rate)], rate, subtype="FLOAT")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output", default="example_output", help="folder for everything the example writes")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the example song")
    parser.add_argument("--overwrite", action="store_true", help="separate again even if the example is done")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    parser.add_argument("--no_report", action="store_true", help="no report.html / index.html listening pages")
    add_key_arguments(parser.add_argument_group("BASIS sampler (default: the shipped priors' config.yml)"),
                      SAMPLER_KEYS)
    args = parser.parse_args(argv)
    if not 2.0 <= args.seconds <= 60.0:
        raise UserError(f"--seconds must be between 2 and 60, got {args.seconds:g}")
    from datasets import midi_dataset as md

    md.check_renderer(md.DEFAULT_SOUNDFONT)  # set-up could not install FluidSynth: one line saying what to install
    for prior in PRIORS:
        if not (prior / CONFIG_NAME).is_file() or not (prior / "tf_ckpts" / "checkpoint").is_file():
            raise UserError(f"the shipped prior {prior} is missing (config.yml and tf_ckpts/): restore it with "
                            "'git checkout -- pretrained' or retrain it (README, 'Shipped priors')")
    start = time.perf_counter()
    output = (ROOT / args.output).resolve() if not Path(args.output).is_absolute() else Path(args.output)
    dataset = output / "open_duos"

    run_step("1/2 render a test piece of the open dataset (violin + piano, FluidSynth)",
             ["datasets/build_midi_dataset.py", "--output", str(dataset), "--pieces", PIECE, "--jobs", "1",
              *(["--no_progress"] if args.no_progress else [])])
    name = md.piece_name(PIECE)
    rendered = md.song_dir(dataset, md.split_of(PIECE, md.RenderOptions().test_fraction), name)
    if not (rendered / "mix.wav").is_file():
        raise UserError(f"{PIECE} was not rendered into {rendered}; see the messages above")
    songs = output / "songs"
    song = songs / name
    folder = output / name
    overrides = config_overrides(args)
    settings = {"seconds": args.seconds, **overrides}
    record = output / "example.json"
    if args.overwrite:
        shutil.rmtree(folder, ignore_errors=True)
    elif (folder / "metrics.json").is_file() and record.is_file() and json.loads(record.read_text()) != settings:
        raise UserError(f"{folder} holds the example separated with {json.loads(record.read_text())}, not "
                        f"{settings}; add --overwrite to separate again, or give another --output")
    make_song(rendered, song, args.seconds)
    record.write_text(json.dumps(settings))

    print(f"\n== 2/2 separate {args.seconds:g} s of {name} with BASIS and the shipped priors, invert, score\n"
          f"$ python separate_songs.py {songs} pretrained/piano pretrained/violin --config "
          f"pretrained/piano/config.yml --output {output}"
          + "".join(f" --{key} {value}" for key, value in overrides.items()), flush=True)
    from core.config import load_config
    from core.rundir import setup_logging
    from separation import song_folders
    from separation.figures import plot_score_boxes

    config = load_config(PRIORS[0] / CONFIG_NAME, overrides, required=("n_filters",))
    logger = setup_logging(output)
    song_folders.separate_songs([song], [str(p) for p in PRIORS], config, output, progress=not args.no_progress,
                                logger=logger, report=False, command=shlex.join([sys.executable, *sys.argv]))
    scores = song_folders.collect_scores(output, [song])
    plot_score_boxes({method: by_song[name] for method, by_song in scores.items()}, folder / "scores.png",
                     title=f"{name}: BASIS, mixture baseline, IRM oracle")
    table = song_folders.aggregate_table(scores, ("piano", "violin"))
    table.to_csv(output / "scores.csv")
    title = f"BSS Eval v4 of {name} ({args.seconds:g} s), median over 1 s frames (dB)"
    print("\n" + song_folders.format_table(table, title))
    pages = ""
    if not args.no_report:
        from separation.report import write_index, write_report

        pages = f"; open {write_report(folder)} in a browser (and {write_index(output, [folder], 'example')})"
    print(f"\nexample done in {time.perf_counter() - start:.0f} s. Listen: {folder / 'piano.wav'}, "
          f"{folder / 'violin.wav'}; figures: {folder / 'spectrograms.png'}, {folder / 'scores.png'}{pages}")
    return 0


if __name__ == "__main__":
    run_main(main)
