"""Turn the mel spectrograms separated by BASIS back into audio, and score them.

    python melspec_inversion_basis.py DIRPATH [--algorithm griffin|reuse_phase] [--method frame|whole]
        [--wiener_filter] [--song_dir PATH] [--output NAME] [--overwrite] [--no_report] [--n_iter N]
        [--griffin_init random|mixture] [--sources NAME ...] [--scale dB|power] [--seam_overlap N]

DIRPATH holds the ``results.npz`` of ``run_basis_sep.py`` (see ``separation/results.py`` for its keys; files of the
seed's own scripts are read too). The output folder ``DIRPATH/<output>`` (default ``inverse_<algorithm>_<method>``,
plus ``_wiener_filter``, as the seed named it) receives one wav per source (``piano.wav`` ... or ``sep1.wav`` ...),
the inverted ground truth (``gt_<name>.wav``) and mixture (``mix.wav``), 16 kHz; ``spectrograms.png`` (ground truth
vs estimate); ``out.log``; and, when the song's source wavs are given with ``--song_dir`` and ``bss_eval_v4.py`` is
present, the BSS Eval v4 scores (a table on screen, ``metrics.json`` in museval's layout, ``metrics.csv``) and
``scores.png``: box plots of this run next to every other ``metrics.json`` found below DIRPATH (other inversions,
and oracles written there by ``oracle_systems.py --output DIRPATH/oracles``). ``DIRPATH/report.html`` is written
again with this inversion as one more column of audio players (``--no_report``: left as it is).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import core  # noqa: F401  (quiets TensorFlow's C++ logging before anything imports it)
import numpy as np

from core import spectral
from core.errors import UserError, run_main, warn
from core.rundir import check_output_dir, setup_logging
from datasets.data_loader import load_song
from core.spectral import SpectrogramParams
from separation import evaluation, figures, inversion
from separation.results import (RESULTS_NAME, inversion_lengths, inversion_mixture, invert_results, load_results,
                                write_inverted)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("dirpath", metavar="DIRPATH", help="folder holding results.npz")
    parser.add_argument("--algorithm", choices=("griffin", "reuse_phase"), default="reuse_phase",
                        help="phase of the estimates: Griffin-Lim, or the mixture's phase (needs the mixture)")
    parser.add_argument("--method", choices=spectral.METHODS, default="frame",
                        help="frame: each 2.04 s segment on its own, cross-faded at the seams; whole: all segments "
                             "as one STFT inverted once")
    parser.add_argument("--wiener_filter", action="store_true",
                        help="single-channel Wiener filter of the mixture STFT with the estimated source powers "
                             "(with --algorithm reuse_phase; needs the mixture)")
    parser.add_argument("--song_dir", metavar="PATH",
                        help="song folder (mix.wav and one wav per source): the mixture when results.npz has no "
                             "stft_mixture, and the references for the scores")
    parser.add_argument("--sources", nargs="+", metavar="NAME",
                        help="source names of x1, x2, ... when results.npz stores none: the wavs read from "
                             "--song_dir (default: piano violin, the seed's order); output files stay sep1, sep2, ...")
    parser.add_argument("--output", metavar="NAME",
                        help="output folder, relative to DIRPATH (default inverse_<algorithm>_<method>"
                             "[_wiener_filter])")
    parser.add_argument("--overwrite", action="store_true", help="write over an earlier inversion in that folder")
    parser.add_argument("--no_report", action="store_true",
                        help="do not write DIRPATH/report.html (the listening page with every inversion found)")
    parser.add_argument("--n_iter", type=int, default=spectral.DEFAULT_GL_ITER, metavar="N",
                        help="Griffin-Lim iterations")
    parser.add_argument("--griffin_init", choices=inversion.GRIFFIN_INITS, default="random",
                        help="Griffin-Lim's starting phase: random (the seed's, librosa's) or the mixture's "
                             "(needs the mixture; output folder name gets _mixture_init)")
    parser.add_argument("--scale", choices=("dB", "power"), default="dB",
                        help="what the spectrograms of results.npz hold")
    parser.add_argument("--seam_overlap", type=int, default=spectral.DEFAULT_SEAM_OVERLAP,
                        help="frame method: samples each segment reaches into its neighbours (crossfade half-length;"
                             " 0 = the seed's plain concatenation)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    params = SpectrogramParams()
    if args.n_iter < 1:
        raise UserError(f"--n_iter must be at least 1, got {args.n_iter}")
    if args.seam_overlap < 0:
        raise UserError(f"--seam_overlap must be >= 0, got {args.seam_overlap}")
    if args.wiener_filter and args.algorithm == "griffin":
        raise UserError("--wiener_filter filters the mixture's STFT and so replaces Griffin-Lim: "
                        "use it with --algorithm reuse_phase (the default)")
    if args.griffin_init == "mixture" and args.algorithm != "griffin":
        raise UserError("--griffin_init mixture only applies to --algorithm griffin")
    algorithm = "wiener" if args.wiener_filter else args.algorithm
    dirpath = Path(args.dirpath)
    if not dirpath.is_dir():
        raise UserError(f"{dirpath} is not a folder: give the folder holding results.npz")
    results = load_results(dirpath / RESULTS_NAME, params, args.scale)

    # the song: mixture audio for mixture phase / Wiener filter, references for the scores
    song, reference_names = None, None
    if args.song_dir:
        if results.sources:
            reference_names = results.sources
            if args.sources and list(args.sources) != results.sources:
                warn(f"results.npz names its sources {', '.join(results.sources)}; --sources ignored")
        else:
            reference_names = list(args.sources or ("piano", "violin"))
            if len(reference_names) != results.n_sources:
                raise UserError(f"results.npz holds {results.n_sources} estimates but --sources names "
                                f"{len(reference_names)} ({', '.join(reference_names)})")
        song = load_song(args.song_dir, reference_names, params, n_segments=results.n_segments)
    elif args.sources:
        warn("--sources is only used with --song_dir")

    n_samples, scored_length = inversion_lengths(results, song, params)
    needs_mixture = algorithm != "griffin" or args.griffin_init == "mixture"
    mixture_audio = inversion_mixture(results, song, params) if needs_mixture else None

    name = args.output or (f"inverse_{args.algorithm}_{args.method}" + ("_wiener_filter" if args.wiener_filter else "")
                           + ("_mixture_init" if args.griffin_init == "mixture" else ""))
    output = check_output_dir(dirpath / name, args.overwrite, evaluation.SCORED_AUDIO_PATTERNS)
    logger = setup_logging(output)
    logger.info("command: %s", shlex.join([sys.executable, *(argv if argv is not None else sys.argv)]))
    logger.info("%s: %d sources (%s), %d segments, %.2f s; algorithm %s, method %s", results.path,
                results.n_sources, ", ".join(results.names), results.n_segments, n_samples / params.sample_rate,
                algorithm, args.method)

    inverted = invert_results(results, params, algorithm, args.method, n_samples, mixture_audio,
                              n_iter=args.n_iter, seam_overlap=args.seam_overlap, griffin_init=args.griffin_init)
    logger.info("inverted %d spectrograms (estimates, ground truth, mixture) in %.2f s",
                (1 + (results.ground_truth is not None)) * results.n_sources + 1, inverted.seconds)
    write_inverted(output, results, inverted, params)

    if song is not None:
        missing = [n for n in reference_names if n not in song.sources_audio]
        if missing:
            warn(f"{args.song_dir} has no {', '.join(m + '.wav' for m in missing)}: no scores")
        else:
            references = np.stack([song.sources_audio[n][:scored_length] for n in reference_names])
            scores = evaluation.evaluate_sources(references, inverted.estimates[:, :scored_length],
                                                 results.names, params.sample_rate)
            scores.save(output)
            print(scores.table(f"BSS Eval v4, median over {scores.n_frames} frames of {scores.window:g} s ({name})"))
            found = evaluation.find_metrics(dirpath)
            ordered = dict(sorted(found.items(), key=lambda item: (not item[0].startswith("inverse"), item[0])))
            figures.plot_score_boxes(ordered, output / "scores.png", title=dirpath.name)
    if not args.no_report:  # DIRPATH's page now lists this inversion as one more method
        from separation import report

        if args.song_dir and not (dirpath / report.RUN_NAME).is_file():
            report.write_run_record(dirpath, song_dir=str(Path(args.song_dir).resolve()), sources=results.names)
        logger.info("wrote %s", report.write_report(dirpath, results.names))
    logger.info("wrote %s", output)
    return 0


if __name__ == "__main__":
    run_main(main)
