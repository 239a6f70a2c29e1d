"""Separate every song of a folder with BASIS, score it next to the mixture baseline and the IRM oracle, aggregate.

    python separate_songs.py SONGS_DIR RESTORE_PATH_PIANO RESTORE_PATH_VIOLIN --config CONFIG --output OUT
        [--shard i/n] [--n_mixed N] [--no_baselines]

SONGS_DIR holds song folders (``mix.wav`` and, for scores, ``<source>.wav``), directly or one split level below
(``songs/test/<song>``). Each song gets ``OUT/<song>/`` with what ``run_basis_sep.py --inverse`` writes, and
``baselines/mixture`` and ``baselines/IRM`` when it has ground truth. Songs already done are skipped, so re-running
after an interruption continues; ``--shard i/n`` takes every n-th song from the i-th, so n machines can share a list.
The table (median over frames per song, then over songs, of every song scored in OUT) is printed and written to
``OUT/scores.csv``; ``OUT/scores.png`` draws the per-song medians. Each song folder gets ``report.html`` (audio
players for the mixture, ground truth, BASIS and the baselines; scores; figures) and ``OUT/index.html`` links them,
one row per song (``--no_report``: neither).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import core  # noqa: F401  (quiets TensorFlow's start-up logging; must come first)
from core.config import add_config_arguments, config_overrides, load_config
from core.errors import run_main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("songs", metavar="SONGS_DIR", help="folder of song folders")
    parser.add_argument("restore_paths", nargs="+", metavar="RESTORE_PATH", help="one prior per source")
    parser.add_argument("--output", default="separated_songs", metavar="OUT", help="one folder per song in here")
    parser.add_argument("--sources", nargs="+", default=["piano", "violin"], metavar="NAME",
                        help="source names, one per restore path")
    parser.add_argument("--model", choices=("ncsn", "glow"), default="ncsn", help="kind of the priors")
    parser.add_argument("--shard", metavar="i/n", help="separate only shard i of n (1-based) of the song list")
    parser.add_argument("--n_mixed", type=int, metavar="N", help="only the first N segments of each song")
    parser.add_argument("--batch_segments", type=int, default=16, metavar="N", help="segments separated together")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Langevin dynamics")
    parser.add_argument("--no_baselines", action="store_true", help="skip the mixture baseline and the IRM oracle")
    parser.add_argument("--no_report", action="store_true",
                        help="no report.html per song and no OUT/index.html (make_report.py writes them later)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_config_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from core.errors import UserError

    if len(args.sources) != len(args.restore_paths):
        raise UserError(f"{len(args.restore_paths)} restore paths but {len(args.sources)} source names; give one "
                        "--sources name per restore path")
    if args.n_mixed is not None and args.n_mixed < 1:
        raise UserError(f"--n_mixed must be at least 1, got {args.n_mixed}")
    required = ("n_filters",) if args.model == "ncsn" else ("L", "K", "n_filters")
    config = load_config(args.config, config_overrides(args), required=required)

    from core.rundir import setup_logging
    from separation import song_folders
    from separation.figures import plot_score_boxes

    index, count = song_folders.parse_shard(args.shard)
    songs = song_folders.find_songs(args.songs)
    mine = song_folders.shard(songs, index, count)
    output = Path(args.output)
    logger = setup_logging(output)
    command = shlex.join([sys.executable, *(argv if argv is not None else sys.argv)])
    logger.info("command: %s", command)
    logger.info("%d songs in %s; shard %d/%d: %d songs", len(songs), args.songs, index, count, len(mine))
    song_folders.separate_songs(mine, args.restore_paths, config, output, args.sources, args.model, args.n_mixed,
                                args.seed, args.batch_segments, baselines=not args.no_baselines,
                                progress=not args.no_progress, logger=logger, report=not args.no_report,
                                command=command)
    scores = song_folders.collect_scores(output, songs)
    if scores:
        table = song_folders.aggregate_table(scores, args.sources)
        table.to_csv(output / "scores.csv")
        title = f"BSS Eval v4 (dB), median over frames, then over songs ({output})"
        print(song_folders.format_table(table, title))
        per_song = {method: song_folders.song_medians(by_song) for method, by_song in scores.items()}
        plot_score_boxes(per_song, output / "scores.png", title="median per song")
    if not args.no_report:
        from separation.report import write_index

        write_index(output, [output / song.name for song in songs if (output / song.name).is_dir()],
                    title=f"BASIS separations of {args.songs}")
    return 0


if __name__ == "__main__":
    run_main(main)
