"""Convert audio files into mel-spectrogram segments (TFRecords and/or .npy), mirroring the input tree.

    python datasets/wav_to_spec.py INPUT_PATH OUTPUT_PATH --use_dB --tfrecords

INPUT_PATH is an audio file or a folder walked recursively; ``INPUT/a/b/song.wav`` becomes
``OUTPUT/a/b/song.tfrecord`` (one record per 2.04 s segment) and/or ``OUTPUT/a/b/song.npy``
((n_segments, 96, 64) float32). Files that cannot be used are reported and skipped; the exit status is 1 if any
file was skipped, 0 otherwise.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from core import import_tensorflow  # noqa: E402
from core.errors import UserError, run_main, warn  # noqa: E402
from core.rundir import check_output_dir  # noqa: E402
from core.spectral import SpectrogramParams, audio_to_mel_segments  # noqa: E402
from datasets.preprocessing import find_audio_files, load_audio, write_npy, write_tfrecord  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    defaults = SpectrogramParams()
    parser = argparse.ArgumentParser(
        description="Convert audio files (any format libsndfile reads; stereo is downmixed, other rates resampled) "
                    "into mel-spectrogram segments, mirroring INPUT_PATH's folder tree in OUTPUT_PATH.")
    parser.add_argument("input_path", metavar="INPUT_PATH", help="an audio file or a folder of audio files")
    parser.add_argument("output_path", metavar="OUTPUT_PATH", help="folder that receives the spectrograms")
    parser.add_argument("--use_dB", action="store_true",
                        help="store dB (clipped to [db_min, db_max]) instead of mel power (clipped to the same range)")
    parser.add_argument("--tfrecords", action="store_true",
                        help="write one .tfrecord per file (one record per segment, for training)")
    parser.add_argument("--npy", action="store_true",
                        help="write one .npy per file, (n_segments, n_mels, n_frames) float32 "
                             "(the default when --tfrecords is not given)")
    parser.add_argument("--overwrite", action="store_true", help="write over spectrograms already in OUTPUT_PATH")
    spec = parser.add_argument_group("spectrogram parameters (defaults: the seed's)")
    for field in dataclasses.fields(SpectrogramParams):
        spec.add_argument(f"--{field.name}", type=type(getattr(defaults, field.name)),
                          default=getattr(defaults, field.name),
                          help=f"default {getattr(defaults, field.name)}")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    params = SpectrogramParams(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SpectrogramParams)})
    scale = "dB" if args.use_dB else "power"
    formats = (["tfrecord"] if args.tfrecords else []) + (["npy"] if args.npy or not args.tfrecords else [])
    input_path = Path(args.input_path)
    files = find_audio_files(input_path)
    output = check_output_dir(args.output_path, args.overwrite, result_patterns=[f"*.{ext}" for ext in formats])
    root = input_path if input_path.is_dir() else input_path.parent

    if "tfrecord" in formats:
        import_tensorflow()  # loaded before the clock starts: it takes seconds
    start = time.perf_counter()
    n_segments = n_seconds = n_done = 0
    skipped = []
    for path in tqdm(files, desc="wav_to_spec", unit="file", disable=None):
        try:
            audio, info = load_audio(path, params.sample_rate)
            if audio.shape[0] < params.segment_samples:
                raise UserError(f"{path} is {audio.shape[0] / params.sample_rate:.2f} s long, shorter than one "
                                f"segment ({params.segment_seconds:.2f} s)")
            if not np.all(np.isfinite(audio)):
                raise UserError(f"{path} holds NaN or infinite samples")
            mel = audio_to_mel_segments(audio, params, scale)
        except UserError as err:
            warn(f"skipped: {err}")
            skipped.append(path)
            continue
        target = output / path.relative_to(root).with_suffix("")
        target.parent.mkdir(parents=True, exist_ok=True)
        if "tfrecord" in formats:
            write_tfrecord(target.with_suffix(".tfrecord"), mel, source_file=str(path), scale=scale)
        if "npy" in formats:
            write_npy(target.with_suffix(".npy"), mel)
        n_done += 1
        n_segments += mel.shape[0]
        n_seconds += audio.shape[0] / params.sample_rate

    elapsed = time.perf_counter() - start
    print(f"wav_to_spec: {n_done} files, {n_segments} segments of {params.n_mels}x{params.n_frames} ({scale}), "
          f"{n_seconds:.1f} s of audio, {len(skipped)} skipped, {elapsed:.1f} s "
          f"({n_seconds / max(elapsed, 1e-9):.0f} audio-s/s) -> {output}")
    if n_done == 0:
        raise UserError(f"no file under {input_path} could be converted (see the warnings above)")
    return 1 if skipped else 0


if __name__ == "__main__":
    run_main(main)
