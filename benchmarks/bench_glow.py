"""Benchmark: Glow training steps/s, the compiled step (tf.function) against the same step run eagerly.

The model is the config's Glow (default ``configs/tiny_glow.yml``: L=2, K=2, 16 filters) on random [-0.5, 0.5]
inputs of (batch, height, width, 1) = (8, 96, 64, 1); a step is bits/dim, its gradient and an Adamax update
(what ``train_glow.py`` runs). Compilation (the first compiled call) is timed separately. Eager and compiled
alternate inside each repeat; the median over ``--repeats`` is reported.

    .venv/bin/python benchmarks/bench_glow.py [--config configs/tiny_glow.yml] [--batch 8] [--steps 5] [--repeats 3]

Run it on a GPU machine with ``--config configs/melspec_glow.yml --batch 32`` for the seed's configuration.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import core  # noqa: E402,F401

tf = core.import_tensorflow()
import tf_keras as keras  # noqa: E402

from core.config import load_config  # noqa: E402
from flow_models.glow import build_flow  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny_glow.yml")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = load_config(args.config, required=("L", "K", "n_filters"))
    shape = (config.height, config.width, 1)
    flow = build_flow(config, shape, kind="glow")
    batch = tf.random.uniform((args.batch, *shape), -0.5, 0.5, seed=0)
    flow.initialize(batch)
    optimizer = keras.optimizers.Adamax(1e-4)

    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(flow.bits_per_dim(x))
        optimizer.apply_gradients(zip(tape.gradient(loss, flow.trainable_variables), flow.trainable_variables))
        return loss

    compiled = tf.function(step)
    start = time.perf_counter()
    float(compiled(batch))
    compile_s = time.perf_counter() - start
    float(step(batch))  # eager warm-up

    rates = {"eager": [], "tf.function": []}
    for _ in range(args.repeats):
        for name, fn in (("eager", step), ("tf.function", compiled)):
            start = time.perf_counter()
            for _ in range(args.steps):
                loss = fn(batch)
            float(loss)
            rates[name].append(args.steps / (time.perf_counter() - start))
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    n_params = sum(int(tf.size(v)) for v in flow.trainable_variables)
    print(f"Glow L={config.L} K={config.K} n_filters={config.n_filters} ({n_params:,} parameters), batch "
          f"{args.batch} x {shape}, {device}; first compiled call {compile_s:.1f} s")
    for name, values in rates.items():
        print(f"  {name:12s} {statistics.median(values):7.2f} steps/s   all: "
              + ", ".join(f"{v:.2f}" for v in values))
    ratio = statistics.median(rates["tf.function"]) / statistics.median(rates["eager"])
    print(f"  compiled / eager: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
