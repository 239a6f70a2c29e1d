"""Benchmark: NCSN training steps/s and annealed-Langevin steps/s, eager against compiled (tf.function, XLA).

The model is the config's score network (default ``configs/tiny_ncsn.yml``: v1, n_filters 8, 4 noise levels) on
random [0, 1] inputs of (batch, height, width, 1) = (8, 96, 64, 1) by default. Measured, on whatever device
TensorFlow picks (the CPU on a machine without GPU):

* training step: DSM loss (:func:`ncsn.losses.dsm_loss`), gradient, Adam update -- eagerly, as a ``tf.function``,
  and as a ``tf.function(jit_compile=True)`` (XLA);
* Langevin step: one update x <- x + eta s(x, sigma_i) + sqrt(2 eta) z of the whole batch -- the annealed-Langevin
  core run eagerly (``tf.while_loop`` executes as a Python loop) against the compiled sampler
  (:class:`ncsn.sampling.AnnealedLangevin`, all levels in one graph), with and without XLA.

Compilation (first call) is timed separately and left out of the rates. Configurations alternate inside each
repeat so machine noise hits them all; the median over ``--repeats`` is reported with all runs.

    .venv/bin/python benchmarks/bench_ncsn.py [--config configs/tiny_ncsn.yml] [--batch 8] [--repeats 3]
        [--train_steps 5] [--langevin_T 2] [--no_xla]
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
import tf_keras as keras  # noqa: E402

from core.config import load_config  # noqa: E402
from ncsn.losses import dsm_loss  # noqa: E402
from ncsn.networks import build_score_network, count_parameters  # noqa: E402
from ncsn.sampling import AnnealedLangevin, annealed_langevin, model_score_fn  # noqa: E402
from ncsn.schedule import sigmas_from_config  # noqa: E402


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    if isinstance(result, tf.Tensor):
        result.numpy()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny_ncsn.yml")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the config's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train_steps", type=int, default=5, help="training steps per timed run")
    parser.add_argument("--langevin_T", type=int, default=2,
                        help="Langevin steps per level in a timed run (x the config's num_classes levels)")
    parser.add_argument("--no_xla", action="store_true", help="skip the jit_compile=True variants")
    args = parser.parse_args(argv)

    config = load_config(args.config, required=("n_filters",))
    batch = args.batch or config.batch_size
    shape = (batch, config.height, config.width, 1)
    keras.utils.set_random_seed(0)
    model = build_score_network(config, shape[1:])
    sigmas = sigmas_from_config(config)
    optimizer = keras.optimizers.Adam(config.learning_rate)
    generator = tf.random.Generator.from_seed(0)
    data = tf.random.uniform(shape, seed=1)
    print(f"device: {tf.config.list_logical_devices()[-1].name}; model {config.version}, n_filters {config.n_filters}, "
          f"{count_parameters(model):,} parameters, input {shape}, {len(sigmas)} levels; "
          f"threads intra/inter: {tf.config.threading.get_intra_op_parallelism_threads()}/"
          f"{tf.config.threading.get_inter_op_parallelism_threads()} (0 = all cores)")

    def train_step():
        with tf.GradientTape() as tape:
            loss = dsm_loss(model, data, sigmas, generator=generator)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    def train_steps(step):
        def run():
            for _ in range(args.train_steps):
                loss = step()
            return loss
        return run

    train_variants = {"eager": train_step, "tf.function": tf.function(train_step)}
    if not args.no_xla:
        train_variants["tf.function+XLA"] = tf.function(train_step, jit_compile=True)

    score_fn = model_score_fn(model)
    T = args.langevin_T
    n_langevin = len(sigmas) * T
    start = tf.random.uniform(shape, seed=2)
    langevin_variants = {
        "eager": lambda: annealed_langevin(score_fn, start, sigmas, T, config.step_lr, seed=[0, 1]),
        "tf.function": AnnealedLangevin(score_fn, sigmas, T, config.step_lr),
    }
    if not args.no_xla:
        langevin_variants["tf.function+XLA"] = AnnealedLangevin(score_fn, sigmas, T, config.step_lr,
                                                                jit_compile=True)
    langevin_calls = {name: (variant if name == "eager" else (lambda v=variant: v(start, [0, 1])))
                      for name, variant in langevin_variants.items()}

    # first calls: tracing and compilation (XLA may be unavailable for some op on some builds)
    for kind, variants in (("train", train_variants), ("langevin", langevin_calls)):
        for name in list(variants):
            try:
                seconds = timed(variants[name])
                print(f"first call ({kind}, {name}): {seconds:.1f} s")
            except Exception as err:  # noqa: BLE001  (report and go on without this variant)
                lines = [line.strip() for line in str(err).splitlines() if line.strip()]
                print(f"{kind}, {name}: failed ({type(err).__name__}: {lines[-1][:300] if lines else ''})")
                del variants[name]

    train_rates = {name: [] for name in train_variants}
    langevin_rates = {name: [] for name in langevin_calls}
    for _ in range(args.repeats):
        for name, step in train_variants.items():
            train_rates[name].append(args.train_steps / timed(train_steps(step)))
        for name, call in langevin_calls.items():
            langevin_rates[name].append(n_langevin / timed(call))

    for title, rates, unit in (("training", train_rates, f"steps/s (batch {batch})"),
                               ("annealed Langevin", langevin_rates, f"steps/s (batch {batch}, "
                                                                      f"{n_langevin} steps per run)")):
        print(f"\n{title}: {unit}")
        eager = statistics.median(rates["eager"])
        print("| variant | median | x eager | all runs |\n|---|---|---|---|")
        for name, values in rates.items():
            median = statistics.median(values)
            runs = ", ".join(f"{v:.3g}" for v in values)
            print(f"| {name} | {median:.3g} | {median / eager:.2f} | {runs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
