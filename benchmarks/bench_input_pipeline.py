"""Benchmark: spectrograms per second delivered by the suite's tf.data input pipeline, against a 5 000/s goal.

Measured: ``datasets.data_loader.make_dataset`` (interleaved TFRecord reads, vectorised parse, cache, shuffle,
batch, ``Scaling("dB")``, prefetch) over a synthetic training set written with
``datasets.preprocessing.write_tfrecord`` in the training layout (``<tmp>/<source>/train/*.tfrecord``; default
8 files x 1 000 spectrograms of 96x64 float32 dB values), consumed batch by batch as a training loop would.

For each batch size (default 32 and 64), shuffle on:

* cache on, first epoch -- a fresh pipeline each repeat: iterator start-up, reading, parsing, filling the cache;
* cache on, later epochs -- epochs 2 and 3 of the same pipeline, served from the in-memory cache;
* cache off -- every epoch reads and parses the files again.

Configurations are interleaved inside each repeat (so machine noise hits all of them) and the median over
``--repeats`` is reported, as spectrograms/s and as a ratio to the 5 000 spectrograms/s goal. The files were just
written, so "reading" is served by the OS page cache, not the disk.

    .venv/bin/python benchmarks/bench_input_pipeline.py [--files 8] [--per_file 1000] [--batch_sizes 32 64]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import core  # noqa: E402,F401  (quiets TensorFlow's C++ logging; must come before tensorflow)
import numpy as np  # noqa: E402

from datasets.data_loader import Scaling, check_tfrecords, list_tfrecords, make_dataset  # noqa: E402
from core.spectral import SpectrogramParams  # noqa: E402
from datasets.preprocessing import write_tfrecord  # noqa: E402

GOAL = 5000.0  # spectrograms per second


def synthetic_spectrograms(n: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(n, height, width) float32 dB values in [-100, 20], smooth along frequency like real spectrograms."""
    height, width = shape
    tilt = np.linspace(0.0, -50.0, height)[None, :, None]  # louder low bands
    values = -30.0 + tilt + 15.0 * rng.standard_normal((n, height, width))
    return np.clip(values, -100.0, 20.0).astype(np.float32)


def write_dataset(root: Path, n_files: int, per_file: int, shape: tuple[int, int], seed: int) -> Path:
    """Write ``root/piano/train/song_XX.tfrecord`` (and one small test file); return ``root/piano``."""
    rng = np.random.default_rng(seed)
    source = root / "piano"
    for i in range(n_files):
        write_tfrecord(source / "train" / f"song_{i:02d}.tfrecord", synthetic_spectrograms(per_file, shape, rng),
                       source_file=f"synthetic/song_{i:02d}.wav", scale="dB")
    write_tfrecord(source / "test" / "song_test.tfrecord", synthetic_spectrograms(16, shape, rng),
                   source_file="synthetic/song_test.wav", scale="dB")
    return source


def run_epoch(iterator_source, reduce: bool) -> tuple[float, int]:
    """Iterate one epoch of a dataset as a training loop would; return (seconds, spectrograms delivered)."""
    import tensorflow as tf

    start = time.perf_counter()
    count = 0
    for batch in iterator_source:
        count += int(batch.shape[0])
        if reduce:
            float(tf.reduce_sum(batch))  # pull a value out, as a loss would
    return time.perf_counter() - start, count


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure spectrograms/s delivered by make_dataset (first epoch, cached epochs, cache off) "
                    "on a synthetic TFRecord training set, against the 5 000 spectrograms/s goal.")
    parser.add_argument("--files", type=int, default=8, help="train TFRecord files (default 8)")
    parser.add_argument("--per_file", type=int, default=1000, help="spectrograms per file (default 1000)")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[32, 64], help="default: 32 64")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each figure; median reported "
                                                               "(default 3)")
    parser.add_argument("--reduce", action="store_true",
                        help="also reduce every batch to a Python float (default: only read batch.shape)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the data and shuffles (default 0)")
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile of one cache-off epoch at the first batch size")
    args = parser.parse_args(argv)
    if args.files < 1 or args.per_file < 1 or args.repeats < 1 or min(args.batch_sizes) < 1:
        parser.error("--files, --per_file, --repeats and --batch_sizes must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import tensorflow as tf

    params = SpectrogramParams()
    shape = params.shape
    scaling = Scaling("dB")
    print(f"tensorflow {tf.__version__}, numpy {np.__version__}; {args.files} files x {args.per_file} "
          f"spectrograms {shape[0]}x{shape[1]} float32 dB, Scaling('dB'), shuffle on, {args.repeats} repeats "
          f"(median reported), consume: {'reduce_sum' if args.reduce else 'batch.shape'}")

    with tempfile.TemporaryDirectory(prefix="bench_input_pipeline_") as tmp:
        start = time.perf_counter()
        source = write_dataset(Path(tmp), args.files, args.per_file, shape, args.seed)
        files = list_tfrecords(source, "train")
        n_records = check_tfrecords(files, shape, "dB")
        size_mb = sum(f.stat().st_size for f in files) / 2 ** 20
        print(f"wrote {len(files)} train files, {n_records} records, {size_mb:.0f} MiB in "
              f"{time.perf_counter() - start:.1f} s")

        def build(batch_size, cache):
            return make_dataset(files, batch_size, scaling, shape, shuffle=True, cache=cache, seed=args.seed)

        # warm-up: TF runtime, thread pools, function tracing
        run_epoch(build(args.batch_sizes[0], False), args.reduce)

        results = {}  # (batch size, figure) -> list of spectrograms/s
        build_times = []
        for r in range(args.repeats):
            for batch_size in args.batch_sizes:
                t0 = time.perf_counter()
                cached = build(batch_size, True)
                build_times.append(time.perf_counter() - t0)
                seconds, count = run_epoch(cached, args.reduce)
                if count != n_records:
                    raise RuntimeError(f"an epoch delivered {count} spectrograms, expected {n_records}")
                results.setdefault((batch_size, "cache on, first epoch"), []).append(count / seconds)
                for _ in range(2):
                    seconds, count = run_epoch(cached, args.reduce)
                    results.setdefault((batch_size, "cache on, later epochs"), []).append(count / seconds)
                del cached
                uncached = build(batch_size, False)
                seconds, count = run_epoch(uncached, args.reduce)
                results.setdefault((batch_size, "cache off"), []).append(count / seconds)
                del uncached

        print(f"\nmake_dataset(...) itself (building the pipeline, tracing the maps): median "
              f"{np.median(build_times) * 1e3:.0f} ms, not counted below")
        print(f"\n{'batch':>5s}  {'figure':24s}{'median spec/s':>14s}{'x goal':>9s}   all runs (spec/s)")
        verdicts = []
        for (batch_size, figure), rates in results.items():
            median = float(np.median(rates))
            verdicts.append(median / GOAL)
            print(f"{batch_size:5d}  {figure:24s}{median:14.0f}{median / GOAL:9.2f}   "
                  f"{', '.join(f'{x:.0f}' for x in rates)}")
        missed = sum(v < 1 for v in verdicts)
        print(f"\ngoal {GOAL:.0f} spectrograms/s: "
              f"{'met by every figure' if not missed else f'NOT met by {missed} of {len(verdicts)} figures'} "
              f"(lowest {min(verdicts):.2f}x, highest {max(verdicts):.2f}x the goal)")

        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(run_epoch, build(args.batch_sizes[0], False), args.reduce)
            print("\ncProfile of one cache-off epoch (Python side; tf.data runs in C++ threads), by cumulative time:")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(12)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
