"""Build an open piano/violin duo dataset from music21's score corpus, rendered with FluidSynth.

The melody part of each score (the soprano of a Bach chorale, violin 1 of a string quartet) is played by a
violin, all other parts by a piano; both are rendered at 16 kHz mono and written as a song folder
(mix.wav = piano.wav + violin.wav exactly, 16-bit) and as mel-spectrogram TFRecords in the training layout:

    OUTPUT/songs/{train,test}/<piece>/{mix,piano,violin}.wav
    OUTPUT/tfrecords/{piano,violin,mix}/{train,test}/<piece>.tfrecord
    OUTPUT/dataset.json     pieces, their split and duration, options used

Run from the repository root, e.g.:

    .venv/bin/python datasets/build_midi_dataset.py --output data/open_duos
    .venv/bin/python datasets/build_midi_dataset.py --output data/tiny --composers bach --max_pieces 3

Needs the fluidsynth program and a General MIDI SoundFont (Debian/Ubuntu: apt-get install fluidsynth
fluid-soundfont-gm).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.errors import run_main  # noqa: E402
from datasets import midi_dataset as md  # noqa: E402
from datasets import timbres  # noqa: E402
from datasets.corpus import parse_composer_minutes  # noqa: E402

EPILOG = """\
Split: a piece is in the test split when a SHA-256 hash of its corpus name (e.g. bach/bwv66.6) falls below
--test_fraction; it never depends on --seed, --minutes or --max_pieces, so a test piece never lands in training.
Resuming: running again on the same --output keeps every piece whose three wavs and three tfrecords exist
(files are written under temporary names and renamed, so an interrupted run leaves no half piece that counts
as done) and renders the rest; scores skipped earlier are not retried. The rendering options (--soundfont,
--tempo, --test_fraction, --max_piece_minutes, --scale) must be the same as before, unless --overwrite, which
re-renders the pieces this run visits. Nothing outside the files listed above is ever deleted.
Melody part: the part named "Soprano" if the score has one (Bach's chorales with instrumental parts above it),
else the first part (violin 1 of the quartets).
Requirements: the fluidsynth program and a General MIDI SoundFont; on Debian/Ubuntu:
apt-get install fluidsynth fluid-soundfont-gm
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Render piano/violin duos from music21's score corpus (Bach chorales, Beethoven/Haydn/Mozart\n"
                    "string quartets, ...) with FluidSynth: the melody part (soprano / violin 1) on a violin (GM\n"
                    "program 41), every other part on a piano (GM program 1), 16 kHz mono; writes song folders\n"
                    "(mix.wav = piano.wav + violin.wav exactly) and mel-spectrogram TFRecords, split into\n"
                    "train/test by piece:\n\n"
                    "  OUTPUT/songs/{train,test}/<piece>/{mix,piano,violin}.wav\n"
                    "  OUTPUT/tfrecords/{piano,violin,mix}/{train,test}/<piece>.tfrecord\n"
                    "  OUTPUT/dataset.json   pieces, split, duration in seconds, options used",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="output folder (created); an existing one is resumed")
    parser.add_argument("--minutes", type=float, default=130.0, metavar="M",
                        help="stop once the dataset holds M minutes of audio per instrument, train and test together "
                             "(pieces kept from an earlier run count; pieces whose rendering has started at that "
                             "point are finished too, so the total can exceed M by a few pieces) "
                             "(default: %(default)s)")
    parser.add_argument("--max_pieces", type=int, default=None, metavar="N",
                        help="stop after N pieces (skipped scores do not count) (default: no limit)")
    parser.add_argument("--composers", nargs="+", default=list(md.DEFAULT_COMPOSERS), metavar="NAME",
                        help=f"composers of music21's corpus to take scores from (default: "
                             f"{' '.join(md.DEFAULT_COMPOSERS)}; others: e.g. handel schubert monteverdi "
                             f"palestrina, and the single-line collections ryansMammoth oneills1850 essenFolksong, "
                             f"one piece per tune, with --accompany)")
    parser.add_argument("--pieces", nargs="+", default=[], metavar="KEY",
                        help="build exactly these corpus pieces, in this order, e.g. bach/bwv66.6 oneills1850/732 "
                             "haydn/opus1no1/movement1 (instead of all pieces of --composers)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the order in which corpus pieces are visited, not of the split (default: 0)")
    parser.add_argument("--test_fraction", type=float, default=0.2,
                        help="fraction of pieces (by a hash of their name) in the test split (default: %(default)s)")
    parser.add_argument("--tempo", type=float, default=90.0, metavar="QPM",
                        help="tempo in quarter notes per minute for scores without a tempo mark "
                             "(default: %(default)s)")
    parser.add_argument("--max_piece_minutes", type=float, default=10.0, metavar="M",
                        help="cut longer pieces (whole quartets can last an hour) to M minutes, with a short fade; "
                             "0: no limit (default: %(default)s)")
    parser.add_argument("--scale", choices=["dB", "power"], default="dB",
                        help="scale of the TFRecord mel spectrograms (default: %(default)s)")
    parser.add_argument("--piano_timbres", nargs="+", default=None, metavar="TIMBRE",
                        help="timbres the piano part draws from, one per piece: SOURCE:PROGRAM with SOURCE fluidr3, "
                             "csound, merlin or an .sf2 path and a zero-based GM program, or salamander (recorded "
                             "samples); 'training' = all the suite trains on: "
                             f"{' '.join(timbres.TRAINING_TIMBRES['piano'])} (default: fluidr3:0)")
    parser.add_argument("--violin_timbres", nargs="+", default=None, metavar="TIMBRE",
                        help="timbres the violin part draws from; 'training' = "
                             f"{' '.join(timbres.TRAINING_TIMBRES['violin'])} (default: fluidr3:40)")
    parser.add_argument("--soundfont", default=None, metavar="PATH",
                        help="shorthand for --piano_timbres PATH:0 --violin_timbres PATH:40 (one SoundFont)")
    parser.add_argument("--effects", choices=["none", "default"], default="none",
                        help="per-part variation drawn per piece: 'default' = gain +-6 dB, low/high-shelf tilt "
                             "+-6 dB, room reverb on half the parts, velocity jitter sd 8, tempo +-15 %% "
                             "(each can be set below) (default: %(default)s)")
    for name, unit in (("gain_db", "dB"), ("tilt_db", "dB"), ("reverb", "probability"),
                       ("velocity_sd", "MIDI velocity units"), ("tempo_jitter", "fraction"),
                       ("formant_semitones", "whole semitones, 0-6; off in both presets")):
        parser.add_argument(f"--{name}", type=float, default=None, metavar="X",
                            help=f"override the {name} range of --effects ({unit})")
    parser.add_argument("--part_level_db", type=float, default=None, metavar="DB",
                        help="scale each rendered part to this level (90th percentile of its 100 ms RMS, dB re full "
                             "scale) before its effects, so that loud and quiet timbres meet at one balance "
                             "(default: the renderer's own levels)")
    parser.add_argument("--accompany", action="store_true",
                        help="single-line scores (the fiddle tunes of ryansMammoth, folk songs) get a piano "
                             "accompaniment harmonised from the melody (I ii IV V vi V7 per measure) in a figuration "
                             "drawn per piece (block, oom-pah, Alberti, arpeggio, sustained) instead of being skipped")
    parser.add_argument("--style_seed", type=int, default=0,
                        help="seed of the per-piece timbre and effect draws (with the piece name) "
                             "(default: %(default)s)")
    parser.add_argument("--composer_minutes", nargs="+", default=[], metavar="NAME=M",
                        help="cap a composer's share: stop taking its pieces once it holds M minutes "
                             "(e.g. bach=60 to balance chorales against quartets)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="worker processes, each parsing, rendering and writing whole pieces (default: 2)")
    parser.add_argument("--overwrite", action="store_true",
                        help="re-render the pieces this run visits even if they exist, and retry skipped scores "
                             "(default: resume)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    effects = timbres.effect_options(args.effects, **{f.name: getattr(args, f.name)
                                                      for f in dataclasses.fields(timbres.EffectOptions)})
    render = md.RenderOptions(
        piano_timbres=timbres.timbre_specs(args.piano_timbres, args.soundfont, "piano", md.PIANO_PROGRAM),
        violin_timbres=timbres.timbre_specs(args.violin_timbres, args.soundfont, "violin", md.VIOLIN_PROGRAM),
        effects=effects, style_seed=args.style_seed, part_level_db=args.part_level_db, accompany=args.accompany,
        tempo=args.tempo, test_fraction=args.test_fraction, max_piece_minutes=args.max_piece_minutes,
        scale=args.scale)
    options = md.BuildOptions(output=args.output, minutes=args.minutes, max_pieces=args.max_pieces,
                              composers=tuple(args.composers), pieces=tuple(args.pieces), seed=args.seed,
                              jobs=args.jobs, overwrite=args.overwrite, render=render,
                              composer_minutes=parse_composer_minutes(args.composer_minutes))
    data = md.build_dataset(options, progress=not args.no_progress)
    print(md.summary_line(data), flush=True)
    return 0


if __name__ == "__main__":
    run_main(main)
