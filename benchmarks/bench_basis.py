"""Benchmark: BASIS Langevin steps per second, the compiled inner loop against the seed's step-by-step eager loop.

Two NCSN priors built from the config (default ``configs/tiny_ncsn.yml``; random weights: speed does not depend on
training) separate a batch of random [0, 1] "mixtures" of (segments, height, width, 1) with the power-sum-in-dB
mixing model. Timed side by side, alternating inside each repeat so machine noise hits both:

* eager (the seed's way): a Python loop over steps, each step calling both networks eagerly and updating the
  sources with NumPy-free TensorFlow ops, one level at a time;
* compiled: :class:`separation.basis.Basis` -- the T steps of a level as one ``tf.function`` over both sources and
  every segment (optionally ``--xla``).

One "step" updates every source of every segment once. Tracing (first call) is timed separately and left out.
On a GPU, ``--config configs/melspec_ncsnv1.yml --segments 30 --steps 100`` times the seed's setting (192
filters, 30 segments = 1 minute of audio); multiply the step time by L * T = 1000 for a whole separation.

    .venv/bin/python benchmarks/bench_basis.py [--config configs/tiny_ncsn.yml] [--segments 4] [--steps 10]
        [--repeats 3] [--xla]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import core  # noqa: E402,F401  (quiets TensorFlow's C++ logging; must come before tensorflow)
from core import import_tensorflow  # noqa: E402

tf = import_tensorflow()

from core.config import load_config  # noqa: E402
from ncsn.networks import build_score_network, count_parameters  # noqa: E402
from ncsn.schedule import sigmas_from_config  # noqa: E402
from separation.basis import Basis, DecibelMixing, ScoreNetworkPrior  # noqa: E402


def eager_steps(priors, mixing, sources, mixture, level, sigma, step, n_steps, seed):
    """The seed's loop: one eager update of all sources per Python iteration."""
    for t in range(n_steps):
        scores = tf.stack([prior.score(sources[k], level) for k, prior in enumerate(priors)])
        direction = scores + mixing.likelihood_direction(sources, mixture) / sigma ** 2
        noise = tf.random.stateless_normal(tf.shape(sources), seed=[seed, t])
        sources = sources + step * direction + (2.0 * step) ** 0.5 * noise
    return sources


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny_ncsn.yml")
    parser.add_argument("--segments", type=int, default=4, help="segments separated together")
    parser.add_argument("--steps", type=int, default=10, help="Langevin steps per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--xla", action="store_true", help="also time the compiled loop with jit_compile=True")
    args = parser.parse_args(argv)

    config = load_config(args.config, required=("n_filters",))
    shape = (config.height, config.width, 1)
    sigmas = sigmas_from_config(config)
    priors = [ScoreNetworkPrior(build_score_network(config, shape)) for _ in range(2)]
    mixing = DecibelMixing(config.spectrogram_params())
    mixture = tf.random.uniform((args.segments, *shape), seed=0)
    sources = tf.random.uniform((2, args.segments, *shape), seed=1)
    level = len(sigmas) // 2
    step = float(config.step_lr * (sigmas[level] / sigmas[-1]) ** 2)
    variants = {"compiled": Basis(priors, mixing, sigmas, args.steps, config.step_lr)}
    if args.xla:
        variants["compiled + XLA"] = Basis(priors, mixing, sigmas, args.steps, config.step_lr, jit_compile=True)

    def run(name):
        if name == "eager":
            return eager_steps(priors, mixing, sources, mixture, tf.constant(level), float(sigmas[level]), step,
                               args.steps, 0)
        return variants[name].run_level(sources, mixture, level, seed=0)

    names = ["eager", *variants]
    params = count_parameters(priors[0].model)
    print(f"device: {tf.config.list_logical_devices()[-1].device_type}; {config.version} network, "
          f"{config.n_filters} filters ({params:,} parameters) x 2 priors; {args.segments} segments of "
          f"{shape[0]}x{shape[1]}; {args.steps} steps per run")
    for name in names:  # first call: tracing / compilation
        start = time.perf_counter()
        run(name).numpy()
        print(f"  first call ({name}): {time.perf_counter() - start:.2f} s")
    times = {name: [] for name in names}
    for _ in range(args.repeats):
        for name in names:
            start = time.perf_counter()
            run(name).numpy()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name in names:
        rate = args.steps / medians[name]
        print(f"  {name:14s} {rate:8.2f} steps/s  ({medians[name] / args.steps * 1000:.1f} ms/step; runs "
              f"{', '.join(f'{t:.2f}' for t in times[name])} s)")
    for name in variants:
        print(f"ratio {name} / eager (the seed's loop): {medians['eager'] / medians[name]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
