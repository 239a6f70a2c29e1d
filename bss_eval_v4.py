"""BSS Eval v4 on the command line: framewise SDR, ISR, SIR and SAR of separated sources, as ``museval`` 0.4.1.

The library is :mod:`separation.bss_eval`; this file re-exports its museval-compatible functions (``bss_eval``,
``evaluate``, ``pad_or_truncate``, ``aggregate``, ``score_track``, :class:`Scores`), so that
``import bss_eval_v4`` works as ``import museval.metrics`` would.

Script::

    python bss_eval_v4.py --references piano.wav violin.wav --estimates piano_est.wav violin_est.wav \\
        [--names piano violin] [--window 1.0 --hop 1.0] [--output DIR]

prints, per source, the median over frames of SDR, ISR, SIR and SAR (dB) and writes ``DIR/metrics.json`` and
``DIR/metrics.csv`` when ``--output`` is given.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from core.errors import UserError, run_main, warn
from separation.bss_eval import (MAX_SOURCES, METRICS, BSSEvalInputError, Scores, aggregate, bss_eval,  # noqa: F401
                                 evaluate, frame_bounds, pad_or_truncate, score_track)

__all__ = ["MAX_SOURCES", "METRICS", "BSSEvalInputError", "Scores", "aggregate", "bss_eval", "evaluate",
           "frame_bounds", "pad_or_truncate", "score_track", "main"]


# --------------------------------------------------------------------------------------------------- script
def _read_audio(paths: Sequence[str], kind: str) -> tuple[list[np.ndarray], int]:
    """Read audio files as (n_samples, n_channels) float64; one sample rate for all."""
    import soundfile as sf

    audio, rates = [], []
    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"{kind} file '{path}' does not exist")
        try:
            data, rate = sf.read(path, always_2d=True, dtype="float64")
        except (sf.LibsndfileError, RuntimeError, TypeError) as err:
            raise UserError(f"{kind} file '{path}' is not audio that libsndfile can read "
                            f"({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
        audio.append(data)
        rates.append(rate)
    if len(set(rates)) > 1:
        detail = ", ".join(f"{path}: {rate} Hz" for path, rate in zip(paths, rates))
        raise UserError(f"{kind} files have different sample rates ({detail}); resample them to one rate")
    return audio, rates[0]


def _stack(audio: list[np.ndarray], paths: Sequence[str], kind: str, length: Optional[int] = None) -> np.ndarray:
    """Stack (n_samples, n_channels) signals into (n_sources, n_samples, n_channels).

    References must share one length; estimates are zero-padded or cut to ``length`` (the references'), one
    warning per file, as museval's ``evaluate`` pads or cuts them.
    """
    channels = {a.shape[1] for a in audio}
    if len(channels) > 1:
        detail = ", ".join(f"{path}: {a.shape[1]}" for path, a in zip(paths, audio))
        raise UserError(f"{kind} files have different numbers of channels ({detail})")
    if length is None:
        lengths = {a.shape[0] for a in audio}
        if len(lengths) > 1:
            detail = ", ".join(f"{path}: {a.shape[0]}" for path, a in zip(paths, audio))
            raise UserError(f"{kind} files have different lengths in samples ({detail})")
        return np.stack(audio)
    fitted = []
    for path, signal in zip(paths, audio):
        if signal.shape[0] != length:
            action = "cut" if signal.shape[0] > length else "zero-padded"
            warn(f"{kind} '{path}' has {signal.shape[0]} samples and the references {length}: {action} to {length}")
            signal = signal[:length] if signal.shape[0] > length else np.pad(
                signal, [(0, length - signal.shape[0]), (0, 0)])
        fitted.append(signal)
    return np.stack(fitted)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="BSS Eval v4 (as museval 0.4.1): framewise SDR, ISR, SIR, SAR of estimated sources against "
                    "their references; prints the median over frames per source and optionally writes "
                    "metrics.json (museval's layout) and metrics.csv.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--references", nargs="+", required=True, metavar="WAV",
                        help="one audio file per true source")
    parser.add_argument("--estimates", nargs="+", required=True, metavar="WAV",
                        help="the estimated sources, in the order of --references (estimates of another length "
                             "are cut or zero-padded to the references' length, with a warning)")
    parser.add_argument("--names", nargs="+", metavar="NAME", help="source names (default: reference file names)")
    parser.add_argument("--window", type=float, default=1.0, help="window length in seconds")
    parser.add_argument("--hop", type=float, default=1.0, help="hop between windows in seconds")
    parser.add_argument("--mode", choices=("v4", "v3"), default="v4",
                        help="v4: distortion filters estimated once on the track; v3: per window")
    parser.add_argument("--track", default="track", help="track name written in metrics.csv")
    parser.add_argument("--output", metavar="DIR", help="folder for metrics.json and metrics.csv")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if len(args.references) != len(args.estimates):
        raise UserError(f"{len(args.references)} reference files but {len(args.estimates)} estimate files; "
                        f"give one estimate per reference, in the same order")
    names = args.names or [Path(path).stem for path in args.references]
    if len(names) != len(args.references):
        raise UserError(f"{len(names)} names for {len(args.references)} sources")
    if not (args.window > 0 and args.hop > 0 and math.isfinite(args.window) and math.isfinite(args.hop)):
        raise UserError(f"--window and --hop must be positive seconds, got {args.window} and {args.hop}")
    ref_audio, ref_rate = _read_audio(args.references, "reference")
    est_audio, est_rate = _read_audio(args.estimates, "estimate")
    if ref_rate != est_rate:
        raise UserError(f"references are at {ref_rate} Hz but estimates at {est_rate} Hz; resample the estimates")
    references = _stack(ref_audio, args.references, "reference")
    estimates = _stack(est_audio, args.estimates, "estimate", length=references.shape[1])
    if references.shape[2] != estimates.shape[2]:
        raise UserError(f"references have {references.shape[2]} channels but estimates {estimates.shape[2]}")
    if int(args.window * ref_rate) < 1 or int(args.hop * ref_rate) < 1:
        raise UserError(f"--window and --hop must be at least one sample (1/{ref_rate} s)")

    scores = score_track(references, estimates, ref_rate, names, track=args.track, win=args.window,
                         hop=args.hop, mode=args.mode)
    import pandas as pd

    n_frames = scores.n_frames
    print(f"BSS Eval {args.mode}: {len(names)} sources, {references.shape[2]} channel(s), {ref_rate} Hz, "
          f"{n_frames} frames of {args.window:g} s (hop {args.hop:g} s); median over frames, dB")
    with pd.option_context("display.float_format", "{:8.3f}".format, "display.width", 120):
        print(scores.median().rename_axis(None).to_string())
    n_infinite = sum(int(np.isinf(scores.metric(metric)).sum()) for metric in METRICS)
    if n_infinite:
        print(f"note: {n_infinite} values are +-inf dB (an error term exactly zero, e.g. an estimate equal to its "
              f"reference); as museval does, they are stored as NaN and left out of the medians")
    if args.output:
        output = Path(args.output)
        json_path = scores.save_json(output / "metrics.json")
        csv_path = scores.save_csv(output / "metrics.csv")
        print(f"wrote {json_path} and {csv_path}")
    return 0


if __name__ == "__main__":
    run_main(main)
