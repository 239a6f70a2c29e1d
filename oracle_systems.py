"""Oracle systems on a song folder: what a separation could reach knowing the true sources.

    python oracle_systems.py --song_dir PATH [--method IBM1 IBM2 IRM1 IRM2 MWF MEL] [--sources piano violin]
        [--output DIR] [--overwrite] [--no_report]

The song folder holds ``mix.wav`` and one wav per source. Each oracle (see ``separation/oracles.py``) writes
``<output>/<method>/<source>.wav`` (16 kHz, the song's length) and ``<output>/<method>/spectrograms.png``; when
``bss_eval_v4.py`` is present, also ``<output>/<method>/metrics.json`` (museval's layout) and ``metrics.csv``, a table
per method on screen, ``<output>/metrics.csv`` with every method, and ``<output>/scores.png`` (box plots);
``<output>/report.html`` puts every oracle's audio beside the mixture and ground truth (``--no_report``: none).
Writing the oracles into a BASIS result folder (``--output DIRPATH/oracles``) puts them beside the inversions in the
box plots of ``melspec_inversion_basis.py``.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import core  # noqa: F401  (quiets TensorFlow's C++ logging before anything imports it)
import numpy as np

from core import spectral
from core.errors import UserError, run_main
from core.rundir import check_output_dir, setup_logging
from datasets.data_loader import load_song
from core.spectral import SpectrogramParams, audio_to_mel_segments
from datasets.preprocessing import write_estimate
from separation import evaluation, figures, inversion
from separation.oracles import ORACLES, oracle_separation


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--song_dir", required=True, metavar="PATH", help="folder with mix.wav and the sources' wavs")
    parser.add_argument("--method", nargs="+", choices=ORACLES, default=list(ORACLES), metavar="METHOD",
                        help=f"oracles to run, among {' '.join(ORACLES)}")
    parser.add_argument("--sources", nargs="+", default=["piano", "violin"], metavar="NAME",
                        help="source names: SONG_DIR/<name>.wav")
    parser.add_argument("--output", default="oracles", metavar="DIR", help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="write over earlier oracle results in DIR")
    parser.add_argument("--no_report", action="store_true", help="do not write DIR/report.html (the listening page)")
    parser.add_argument("--n_segments", type=int, metavar="N",
                        help="keep only the first N segments of 2.04 s (as a BASIS run on part of a song)")
    parser.add_argument("--mel_algorithm", choices=inversion.ALGORITHMS, default="wiener",
                        help="MEL: how the true mel spectrograms are inverted")
    parser.add_argument("--mel_method", choices=spectral.METHODS, default="frame",
                        help="MEL: frame or whole inversion")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    params = SpectrogramParams()
    if len(set(args.sources)) != len(args.sources):
        raise UserError(f"--sources names a source twice: {' '.join(args.sources)}")
    song = load_song(args.song_dir, args.sources, params, n_segments=args.n_segments)
    missing = [name for name in args.sources if name not in song.sources_audio]
    if missing:
        raise UserError(f"{args.song_dir} has no {', '.join(m + '.wav' for m in missing)}: oracles need every "
                        "source's audio (or name the sources there with --sources)")
    output = check_output_dir(args.output, args.overwrite, evaluation.SCORED_AUDIO_PATTERNS)
    logger = setup_logging(output)
    command = shlex.join([sys.executable, *(argv if argv is not None else sys.argv)])
    logger.info("command: %s", command)
    logger.info("song %s: %.2f s, sources %s", args.song_dir, song.n_samples / params.sample_rate,
                ", ".join(args.sources))

    sources = np.stack([song.sources_audio[name] for name in args.sources])
    references_db = {name: song.sources_mel[name] for name in args.sources}
    all_scores = {}
    for method in dict.fromkeys(args.method):
        start = time.perf_counter()
        estimates = oracle_separation(method, song.mix_audio, sources, params, mel_algorithm=args.mel_algorithm,
                                      mel_method=args.mel_method)
        logger.info("%s: %.2f s", method, time.perf_counter() - start)
        folder = output / method
        for name, audio in zip(args.sources, estimates):
            write_estimate(folder / f"{name}.wav", audio, params.sample_rate)
        figures.plot_spectrogram_comparison(
            references_db, {name: audio_to_mel_segments(audio, params) for name, audio in zip(args.sources, estimates)},
            folder / "spectrograms.png", params, title=f"{method}: ground truth vs oracle estimate (dB)")
        scores = evaluation.evaluate_sources(sources, estimates, args.sources, params.sample_rate)
        scores.save(folder)
        print(scores.table(f"{method}: BSS Eval v4, median over {scores.n_frames} frames of {scores.window:g} s"))
        all_scores[method] = scores
    if all_scores:
        evaluation.write_csv(output / evaluation.CSV_NAME, all_scores)
        figures.plot_score_boxes(all_scores, output / "scores.png", title=f"oracles, {Path(args.song_dir).name}")
    if not args.no_report:
        from separation import report

        report.write_run_record(output, song_dir=str(Path(args.song_dir).resolve()), sources=list(args.sources),
                                method="oracles", command=command)
        logger.info("wrote %s", report.write_report(output))
    logger.info("wrote %s", output)
    return 0


if __name__ == "__main__":
    run_main(main)
