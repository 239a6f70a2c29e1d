"""Benchmark: Flow++ against Glow of the same size on 8x8 digits: test bits/dim after the same training, and
training steps per second, side by side in one run.

The digits are scikit-learn's (offline), dequantised to [-0.5, 0.5] as in tests/test_flows.py; both flows are
built by ``build_flow`` with the same L, K and n_filters, initialised on the same batch, trained with Adam 1e-3 on
the same batches (batch 64), in chunks of ``--chunk`` steps that alternate between the two so that machine load
hits both alike; ``--glow_filters N`` adds a Glow of N filters (e.g. one of about Flow++'s parameter count).
Reported: test bits/dim before and after, the per-pixel Gaussian fit, and steps/s of the compiled train step (the
first chunk, which traces, left out).

    .venv/bin/python benchmarks/bench_flowpp.py [--steps 400] [--chunk 50] [--L 2] [--K 2] [--n_filters 16] \
        [--glow_filters 56]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import core  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps of each flow")
    parser.add_argument("--chunk", type=int, default=50, help="steps per turn (the turns alternate)")
    parser.add_argument("--L", type=int, default=2)
    parser.add_argument("--K", type=int, default=2)
    parser.add_argument("--n_filters", type=int, default=16)
    parser.add_argument("--glow_filters", type=int, default=None,
                        help="also train a Glow with this many filters (e.g. as many parameters as Flow++)")
    args = parser.parse_args()
    tf = core.import_tensorflow()
    import scipy.stats
    import tf_keras as keras
    from sklearn.datasets import load_digits

    from core.config import Config
    from flow_models.glow import build_flow

    rng = np.random.default_rng(0)
    pixels = load_digits().images.astype(np.float32)[..., None]
    data = ((pixels + rng.uniform(size=pixels.shape)) / 17.0 - 0.5).astype(np.float32)
    train, test = data[:1500], tf.constant(data[1500:])
    gaussian = scipy.stats.norm(train.mean(axis=0), train.std(axis=0))
    gaussian_bpd = -gaussian.logpdf(data[1500:]).reshape(len(test), -1).mean() / np.log(2)
    batches = [tf.constant(train[rng.integers(0, len(train), 64)]) for _ in range(args.steps)]

    runs = {}
    flows = {"glow": ("glow", args.n_filters), "flowpp": ("flowpp", args.n_filters)}
    if args.glow_filters:
        flows[f"glow-{args.glow_filters}"] = ("glow", args.glow_filters)
    for name, (kind, n_filters) in flows.items():
        flow = build_flow(Config(L=args.L, K=args.K, n_filters=n_filters), (8, 8, 1), kind=kind)
        flow.initialize(tf.constant(train[:256]))
        optimizer = keras.optimizers.Adam(1e-3)

        def make_step(flow=flow, optimizer=optimizer):
            @tf.function
            def step(batch):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(flow.bits_per_dim(batch))
                grads = tape.gradient(loss, flow.trainable_variables)
                optimizer.apply_gradients(zip(grads, flow.trainable_variables))
                return loss
            return step

        parameters = sum(int(np.prod(v.shape)) for v in flow.trainable_variables)
        runs[name] = dict(flow=flow, step=make_step(), done=0, seconds=0.0, timed=0, parameters=parameters,
                          untrained=float(tf.reduce_mean(flow.bits_per_dim(test))))
    while any(r["done"] < args.steps for r in runs.values()):
        for kind, run in runs.items():
            first, last = run["done"], min(run["done"] + args.chunk, args.steps)
            start = time.perf_counter()
            for index in range(first, last):
                run["step"](batches[index])
            if first > 0:  # the first chunk traces the step
                run["seconds"] += time.perf_counter() - start
                run["timed"] += last - first
            run["done"] = last
    print(f"8x8 digits, L={args.L} K={args.K} n_filters={args.n_filters}, {args.steps} steps of batch 64; "
          f"per-pixel Gaussian fit {gaussian_bpd:.3f} bits/dim")
    print(f"{'flow':<10}{'parameters':>12}{'untrained':>11}{'trained':>9}{'steps/s':>9}")
    for kind, run in runs.items():
        trained = float(tf.reduce_mean(run["flow"].bits_per_dim(test)))
        rate = run["timed"] / run["seconds"] if run["seconds"] else float("nan")
        print(f"{kind:<10}{run['parameters']:>12,}{run['untrained']:>11.3f}{trained:>9.3f}{rate:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
