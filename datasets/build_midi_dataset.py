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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.errors import run_main  # noqa: E402
from datasets import midi_dataset as md  # noqa: E402

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
                             f"{' '.join(md.DEFAULT_COMPOSERS)}; others: e.g. handel schubert monteverdi palestrina)")
    parser.add_argument("--pieces", nargs="+", default=[], metavar="KEY",
                        help="build exactly these corpus pieces, in this order, e.g. bach/bwv66.6 "
                             "haydn/opus1no1/movement1 (instead of all pieces of --composers)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the order in which corpus pieces are visited (not of the split) "
                             "(default: %(default)s)")
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
    parser.add_argument("--soundfont", default=md.DEFAULT_SOUNDFONT, metavar="PATH",
                        help="General MIDI SoundFont (.sf2) (default: %(default)s, from Debian's fluid-soundfont-gm)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="parallel worker processes (each parses, renders and writes whole pieces) "
                             "(default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="re-render the pieces this run visits even if they exist, and retry skipped scores "
                             "(default: resume)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    render = md.RenderOptions(soundfont=args.soundfont, tempo=args.tempo, test_fraction=args.test_fraction,
                              max_piece_minutes=args.max_piece_minutes, scale=args.scale)
    options = md.BuildOptions(output=args.output, minutes=args.minutes, max_pieces=args.max_pieces,
                              composers=tuple(args.composers), pieces=tuple(args.pieces), seed=args.seed,
                              jobs=args.jobs, overwrite=args.overwrite, render=render)
    data = md.build_dataset(options, progress=not args.no_progress)
    print(md.summary_line(data), flush=True)
    return 0


if __name__ == "__main__":
    run_main(main)
