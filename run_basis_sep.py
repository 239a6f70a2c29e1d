"""Separate a song (or toy image mixtures) with BASIS: annealed Langevin dynamics on the sources' posterior.

    python run_basis_sep.py RESTORE_PATH_PIANO RESTORE_PATH_VIOLIN --song_dir PATH --model ncsn|glow
        --config configs/melspec_ncsnv1.yml --output DIRPATH [--inverse]
    python run_basis_sep.py RESTORE_PATH RESTORE_PATH --dataset mnist|cifar10|IMAGES.npz --model ncsn
        --config CONFIG --output DIRPATH

One restore path per source, in the order of ``--sources`` (default: piano violin). NCSN restore paths are a
``train_ncsn.py`` run folder, a checkpoint folder or a checkpoint; Glow restore paths are ``train_noisy_glow.py``
output folders (``sigma_<s>/tf_ckpts`` for every noise level). The config gives the schedule (sigma1, sigmaL,
num_classes, T, step_lr), the sampler (start_level, basis_levels, init, n_chains, temperature, denoise,
consistency) and the networks' shape; every key can be overridden by a flag (``--T 50 --n_chains 2``).

Songs: the whole song (or the first ``--n_mixed`` segments) is separated in batches of ``--batch_segments``.
DIRPATH receives ``results.npz`` (x1, x2, ... estimates; gt1, gt2, ... ground truth when the source wavs exist;
mixed; stft_mixture; sources; n_samples -- mel spectrograms in dB, (n_segments, 96, 64)), ``results_convergence.npz``
(the estimates after every level), ``spectrograms.png``, TensorBoard images, ``config.yml`` and ``out.log``; with
``--inverse`` also ``<source>.wav`` (Wiener filter of the mixture per frame, by default) and, when the source wavs
exist, the BSS Eval v4 scores (``metrics.json``, ``metrics.csv``, a table on screen); ``run.json`` (the run's
settings) and ``report.html``, a page with audio players for the mixture, the ground truth and the estimates, the
scores and the figures (``--no_report``: none). A run that is interrupted
resumes after its last finished noise level when started again with the same arguments.

Toy images: ``--n_mixed`` pairs of test images (default 1000, the seed's table) are averaged into mixtures and
separated; the PSNR of each pair (best of the two source orders) and the mean are written to ``psnr.csv`` and
printed, next to the baseline that returns the mixture for both sources.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

import core  # noqa: F401  (quiets TensorFlow's start-up logging; must come first)
from core.config import CONFIG_NAME, add_config_arguments, config_overrides, load_config, save_config
from core.errors import UserError, run_main, warn

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("restore_paths", nargs="+", metavar="RESTORE_PATH",
                        help="one trained prior per source, in the order of --sources")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--song_dir", metavar="PATH", help="song folder: mix.wav and, for scores, <source>.wav")
    data.add_argument("--dataset", metavar="NAME",
                      help="toy image mixtures: mnist, cifar10 (tensorflow-datasets) or an offline .npz image set")
    parser.add_argument("--model", choices=("ncsn", "glow"), default="ncsn", help="kind of the priors")
    parser.add_argument("--output", default="basis_separation", metavar="DIRPATH", help="output folder")
    parser.add_argument("--sources", nargs="+", metavar="NAME", default=["piano", "violin"],
                        help="source names, one per restore path (the song folder's <name>.wav)")
    parser.add_argument("--n_mixed", type=int, metavar="N",
                        help="songs: separate only the first N segments (default: all); images: N mixtures "
                             "(default 1000)")
    parser.add_argument("--batch_segments", type=int, default=16, metavar="N",
                        help="segments (or image mixtures) separated together; lower it if memory runs out")
    parser.add_argument("--seed", type=int, default=0, help="seed of the starting points and the Langevin noise")
    parser.add_argument("--mixing", choices=("mean", "power_sum", "amplitude_sum", "sum"),
                        help="mixing model (default: power_sum in dB for spectrograms, mean for images)")
    parser.add_argument("--no_report", action="store_true",
                        help="songs: do not write report.html (the listening page; make_report.py writes it later)")
    parser.add_argument("--inverse", action="store_true",
                        help="songs: turn the estimates into <source>.wav and score them when the source wavs exist")
    parser.add_argument("--algorithm", choices=("wiener", "reuse_phase", "griffin"), default="wiener",
                        help="with --inverse: Wiener filter of the mixture, mixture phase, or Griffin-Lim")
    parser.add_argument("--method", choices=("frame", "whole"), default="frame",
                        help="with --inverse: invert each segment on its own (cross-faded seams) or the song at once")
    parser.add_argument("--xla", action="store_true", help="compile the Langevin steps with XLA (GPU)")
    parser.add_argument("--overwrite", action="store_true", help="write over the results already in DIRPATH")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_config_arguments(parser)
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    if len(args.restore_paths) < 2:
        raise UserError(f"BASIS needs one prior per source and at least 2 sources; got {len(args.restore_paths)} "
                        "restore path(s)")
    if args.song_dir and len(args.sources) != len(args.restore_paths):
        raise UserError(f"{len(args.restore_paths)} restore paths but {len(args.sources)} source names "
                        f"({' '.join(args.sources)}); give one --sources name per restore path")
    if args.dataset and len(args.restore_paths) != 2:
        raise UserError("toy image mixtures have 2 sources: give 2 restore paths (the same one twice for one prior)")
    if args.n_mixed is not None and args.n_mixed < 1:
        raise UserError(f"--n_mixed must be at least 1, got {args.n_mixed}")
    if args.batch_segments < 1:
        raise UserError(f"--batch_segments must be at least 1, got {args.batch_segments}")
    if args.inverse and args.dataset:
        warn("--inverse applies to songs; ignored for images")


def fingerprint(args: argparse.Namespace, config, n_mixtures: int) -> str:
    """What makes two runs the same (a resume state is only used by the same run)."""
    from separation.separate import run_fingerprint

    data = str(Path(args.song_dir).resolve()) if args.song_dir else args.dataset
    return run_fingerprint(args.restore_paths, args.model, data, n_mixtures, args.batch_segments, args.seed, config,
                           mixing=args.mixing)


def main(argv=None) -> int:
    args = parse_args(argv)
    check_args(args)
    required = ("n_filters",) if args.model == "ncsn" else ("L", "K", "n_filters")
    config = load_config(args.config, config_overrides(args), required=required)

    from core.rundir import TENSORBOARD_DIR, check_output_dir, setup_logging
    from separation import toy
    from separation.basis import read_resume_state
    from separation.results import CONVERGENCE_NAME, RESULTS_NAME
    from separation.separate import STATE_NAME, SongTask, separate_song

    output = Path(args.output)
    if output.is_dir() and (output / STATE_NAME).is_file() and not args.overwrite:
        pass  # an unfinished run of this output: resume (its settings are checked against the state)
    else:
        output = check_output_dir(output, args.overwrite, (RESULTS_NAME, CONVERGENCE_NAME, toy.PSNR_NAME))
        if args.overwrite:  # starts again: the old resume state is not used, the old TensorBoard images go
            (output / STATE_NAME).unlink(missing_ok=True)
            shutil.rmtree(output / TENSORBOARD_DIR, ignore_errors=True)
    if args.song_dir:
        task = SongTask.from_song(args.song_dir, args.sources, config, args.n_mixed, args.model)
    else:
        task = toy.image_task(args.dataset, config, args.n_mixed or toy.DEFAULT_PAIRS, args.model)
    config = task.config
    key = fingerprint(args, config, task.n_mixtures)
    logger = setup_logging(output)
    read_resume_state(output / STATE_NAME, key)  # a resume with other settings is refused before config.yml is written
    save_config(config, output / CONFIG_NAME)
    command = shlex.join([sys.executable, *(argv if argv is not None else sys.argv)])
    logger.info("command: %s", command)
    logger.info(task.description)

    separate_song(task, args.restore_paths, args.model, output, key,
                  seed=args.seed, batch_size=args.batch_segments, mixing_name=args.mixing,
                  jit_compile=args.xla, invert=args.inverse, algorithm=args.algorithm, method=args.method,
                  progress=not args.no_progress, logger=logger, song_dir=args.song_dir, command=command,
                  report=not args.no_report)
    logger.info("wrote %s", output)
    return 0


if __name__ == "__main__":
    run_main(main)
