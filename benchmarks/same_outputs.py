"""Check that a refactoring changed no output: the transforms, every inversion recipe and the BSS Eval scores of one
fixed two-source song, computed by two checkouts of the suite and compared bit for bit.

    git worktree add /tmp/before REV
    .venv/bin/python benchmarks/same_outputs.py write /tmp/before /tmp/before.npz
    .venv/bin/python benchmarks/same_outputs.py write . /tmp/after.npz
    .venv/bin/python benchmarks/same_outputs.py compare /tmp/before.npz /tmp/after.npz

``write`` imports the suite from the checkout it is given (the module layout before and after the audio transforms
moved to ``core/spectral.py`` are both understood); ``compare`` prints, per array, ``identical`` or the largest
difference, and exits 1 when anything differs.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def write(root: str, output: str) -> None:
    sys.path[:0] = [root, f"{root}/tests"]
    from conftest import music_like
    from separation import evaluation, inversion

    try:
        from core import spectral as transforms
    except ImportError:  # before core/spectral.py: the transforms were in datasets.preprocessing and inversion
        from datasets import preprocessing as transforms
        transforms.stft = inversion.stft
    params = transforms.SpectrogramParams()
    piano, violin = (music_like(9.0, seed=seed).astype(np.float32) for seed in (1, 2))
    mixture = piano + violin
    mel = np.stack([transforms.audio_to_mel_segments(x, params) for x in (piano, violin)])
    arrays = {"mel": mel, "stft": transforms.stft(mixture, params)}
    for algorithm in inversion.ALGORITHMS:
        for method in ("frame", "whole"):
            arrays[f"{algorithm}_{method}"] = inversion.invert_mel(mel, params, algorithm, method, piano.size,
                                                                   mixture, n_iter=8)
    arrays["griffin_from_mixture"] = inversion.invert_mel(mel, params, "griffin", n_samples=piano.size,
                                                          mixture_audio=mixture, n_iter=8, griffin_init="mixture")
    scores = evaluation.evaluate_sources(np.stack([piano, violin]), arrays["wiener_frame"], ["piano", "violin"])
    arrays.update({f"score_{m}": scores.values[m] for m in ("SDR", "ISR", "SIR", "SAR")})
    np.savez(output, **arrays)
    print(f"wrote {len(arrays)} arrays to {output}")


def compare(first: str, second: str) -> int:
    a, b = np.load(first), np.load(second)
    differ = 0
    for key in sorted(set(a.files) | set(b.files)):
        if key not in a.files or key not in b.files:
            print(f"{key}: only in {'the first' if key in a.files else 'the second'}")
            differ += 1
        elif a[key].shape != b[key].shape:
            print(f"{key}: shapes {a[key].shape} and {b[key].shape}")
            differ += 1
        elif np.array_equal(a[key], b[key], equal_nan=True):
            print(f"{key} {a[key].shape}: identical")
        else:
            print(f"{key} {a[key].shape}: differs by up to {np.nanmax(np.abs(a[key] - b[key])):.3g}")
            differ += 1
    print("all identical" if not differ else f"{differ} arrays differ")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    w = commands.add_parser("write", help="compute the outputs with the suite of a checkout")
    w.add_argument("checkout")
    w.add_argument("output", help=".npz to write")
    c = commands.add_parser("compare", help="compare two written .npz files bit for bit")
    c.add_argument("first")
    c.add_argument("second")
    args = parser.parse_args()
    if args.command == "write":
        write(args.checkout, args.output)
        return 0
    return compare(args.first, args.second)


if __name__ == "__main__":
    sys.exit(main())
