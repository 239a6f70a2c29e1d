"""The NCSN package: schedule, loss, annealed Langevin sampler, networks, EMA and NCSNv2's techniques.

Numbers are checked against independent computations: closed forms for Gaussian data and a Gaussian mixture,
numpy re-implementations, scipy's pdist, and the published NCSNv2 CIFAR-10 settings.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist

from conftest import assert_one_line_error, run_script
from core import import_tensorflow

tf = import_tensorflow()
import tf_keras as keras  # noqa: E402

from core.config import Config, load_config  # noqa: E402
from ncsn import techniques  # noqa: E402
from ncsn.losses import dsm_loss, per_example_dsm_loss  # noqa: E402
from ncsn.networks import (ConditionalInstanceNorm2dPlus, EMAWeights, InstanceNorm2dPlus,  # noqa: E402
                           build_score_network, count_parameters, parameter_summary)
from ncsn.sampling import AnnealedLangevin, annealed_langevin, ncsn_sampler  # noqa: E402
from ncsn.schedule import get_sigmas, langevin_step_sizes  # noqa: E402

BASIS_SIGMAS = [1.0, 0.5995, 0.3594, 0.2154, 0.1292, 0.0774, 0.0464, 0.0278, 0.0167, 0.01]  # docs/algorithms.md §2


# ------------------------------------------------------------------------------------------------------ schedule

def test_basis_schedule_matches_the_reference():
    for name in ("geometric", "logarithmic"):
        sigmas = get_sigmas(1.0, 0.01, 10, name)
        assert sigmas.dtype == np.float32 and sigmas.shape == (10,)
        np.testing.assert_allclose(sigmas, BASIS_SIGMAS, atol=5e-5)


def test_geometric_ratio_is_constant_and_linear_steps_are_equal():
    sigmas = get_sigmas(50.0, 0.01, 232, "geometric").astype(np.float64)
    ratios = sigmas[:-1] / sigmas[1:]
    np.testing.assert_allclose(ratios, (50.0 / 0.01) ** (1 / 231), rtol=1e-5)
    linear = get_sigmas(1.0, 0.1, 4, "linear")
    np.testing.assert_allclose(linear, [1.0, 0.7, 0.4, 0.1], rtol=1e-6)
    assert linear[0] == np.float32(1.0) and linear[-1] == np.float32(0.1)
    np.testing.assert_allclose(langevin_step_sizes(BASIS_SIGMAS, 2e-5)[[0, -1]], [2e-5 * 1e4, 2e-5], rtol=1e-5)
    for bad in [(0.01, 1.0, 10, "geometric"), (1.0, 0.01, 0, "geometric"), (1.0, 0.01, 10, "cosine")]:
        with pytest.raises(ValueError):
            get_sigmas(*bad)


# ------------------------------------------------------------------------------------------ loss on Gaussian data

MU, S, DIM = 0.3, 0.5, 16  # data N(MU, S^2 I) in DIM dimensions
LOSS_SIGMAS = get_sigmas(1.0, 0.1, 4)


class GaussianScore(keras.Model):
    """The exact score of the noised data N(MU, (S^2 + sigma^2) I), optionally with a wrong mean."""

    def __init__(self, mean_error: float = 0.0):
        super().__init__()
        self.mean_error = mean_error
        self.sigmas = tf.constant(LOSS_SIGMAS)

    def call(self, inputs, training=None):
        x, labels = inputs
        sigma = tf.gather(self.sigmas, labels)[:, tf.newaxis]
        return -(x - MU - self.mean_error) / (S ** 2 + sigma ** 2)


class AffineScore(keras.Model):
    """s(x, i) = a_i x + b_i, one (a, b) per noise level, shared by all dimensions."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.a = tf.Variable(tf.zeros(num_classes), name="a")
        self.b = tf.Variable(tf.zeros(num_classes), name="b")

    def call(self, inputs, training=None):
        x, labels = inputs
        return tf.gather(self.a, labels)[:, tf.newaxis] * x + tf.gather(self.b, labels)[:, tf.newaxis]


def test_dsm_loss_of_the_exact_score_is_the_analytic_minimum():
    # With x = MU + S e, x~ = x + sigma z and s* = -(x~ - MU)/(S^2 + sigma^2):
    # sigma s* + z = S (S z - sigma e) / (S^2 + sigma^2), each coordinate N(0, S^2 / (S^2 + sigma^2)), so
    # E[loss | sigma] = 0.5 D S^2 / (S^2 + sigma^2), averaged over the uniformly drawn levels.
    rng = np.random.default_rng(0)
    x = tf.constant(MU + S * rng.standard_normal((20000, DIM)), tf.float32)
    losses = per_example_dsm_loss(GaussianScore(), x, LOSS_SIGMAS, seed=[1, 2]).numpy()
    assert losses.shape == (20000,)
    sigmas = LOSS_SIGMAS.astype(np.float64)
    analytic = 0.5 * DIM * np.mean(S ** 2 / (S ** 2 + sigmas ** 2))
    standard_error = losses.std() / math.sqrt(losses.size)
    assert abs(losses.mean() - analytic) < 4 * standard_error, (losses.mean(), analytic, standard_error)
    # a perturbed score is worse (same levels and noise: paired comparison); expected excess is
    # 0.5 D mean(sigma^2 delta^2 / (S^2 + sigma^2)^2) = 0.042 for delta = 0.1
    exact = float(dsm_loss(GaussianScore(), x, LOSS_SIGMAS, seed=[1, 2]))
    wrong = float(dsm_loss(GaussianScore(mean_error=0.1), x, LOSS_SIGMAS, seed=[1, 2]))
    excess = 0.5 * DIM * np.mean(sigmas ** 2 * 0.1 ** 2 / (S ** 2 + sigmas ** 2) ** 2)
    assert wrong - exact == pytest.approx(excess, rel=0.1)
    # the stateless seed makes the loss reproducible; another seed draws other noise
    assert float(dsm_loss(GaussianScore(), x[:64], LOSS_SIGMAS, seed=[1, 2])) == \
        float(dsm_loss(GaussianScore(), x[:64], LOSS_SIGMAS, seed=[1, 2]))
    assert float(dsm_loss(GaussianScore(), x[:64], LOSS_SIGMAS, seed=[1, 3])) != \
        float(dsm_loss(GaussianScore(), x[:64], LOSS_SIGMAS, seed=[1, 2]))


def test_training_with_the_dsm_loss_finds_the_optimal_affine_score():
    model = AffineScore(len(LOSS_SIGMAS))
    generator = tf.random.Generator.from_seed(3)
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.05, 150, 0.5))

    @tf.function
    def train_step():
        x = MU + S * generator.normal((1024, DIM))
        with tf.GradientTape() as tape:
            loss = dsm_loss(model, x, LOSS_SIGMAS, generator=generator)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    for _ in range(800):
        train_step()
    variances = S ** 2 + LOSS_SIGMAS.astype(np.float64) ** 2
    # optimum: a_i = -1 / (S^2 + sigma_i^2), b_i = MU / (S^2 + sigma_i^2); tolerance 3 % on a, 0.03 on b
    np.testing.assert_allclose(model.a.numpy(), -1.0 / variances, rtol=0.03)
    np.testing.assert_allclose(model.b.numpy(), MU / variances, atol=0.03)


# -------------------------------------------------------------------------------------- annealed Langevin sampler

WEIGHTS, MEANS, STDS = np.array([0.3, 0.7]), np.array([-1.0, 1.5]), np.array([0.2, 0.3])


def mixture_score_fn(sigmas):
    """Exact score of the two-Gaussian mixture convolved with N(0, sigma_i^2), elementwise on any shape."""
    sigmas = tf.constant(sigmas, tf.float32)
    weights, means = tf.constant(WEIGHTS, tf.float32), tf.constant(MEANS, tf.float32)
    stds = tf.constant(STDS, tf.float32)

    def score(x, level):
        variances = stds ** 2 + sigmas[level] ** 2
        offsets = x[..., tf.newaxis] - means
        log_parts = tf.math.log(weights) - 0.5 * tf.math.log(variances) - 0.5 * offsets ** 2 / variances
        responsibilities = tf.nn.softmax(log_parts, axis=-1)
        return tf.reduce_sum(-responsibilities * offsets / variances, axis=-1)

    return score


def test_annealed_langevin_samples_a_gaussian_mixture():
    # 5 000 chains from U(0, 1); levels 4 -> 0.05 (10, geometric), T = 300, eps = 0.3 sigma_L^2 (stable at every
    # level: eta_i / sigma_i^2 = 0.3). The last level's target is the mixture with variances STDS^2 + sigma_L^2.
    sigmas = get_sigmas(4.0, 0.05, 10)
    sampler = AnnealedLangevin(mixture_score_fn(sigmas), sigmas, n_steps_each=300, step_lr=0.3 * 0.05 ** 2)
    samples = sampler.sample((5000,), seed=7).numpy()
    right = samples > 0.2  # between the modes: -1 + 6 std and 1.5 - 4.3 std
    target_variances = STDS ** 2 + 0.05 ** 2
    # tolerances: weight 0.03 (4.6 standard errors), means 0.03 (>= 6 s.e.), variances 15 % (4 s.e.)
    assert right.mean() == pytest.approx(WEIGHTS[1], abs=0.03)
    assert samples[~right].mean() == pytest.approx(MEANS[0], abs=0.03)
    assert samples[right].mean() == pytest.approx(MEANS[1], abs=0.03)
    assert samples[~right].var() == pytest.approx(target_variances[0], rel=0.15)
    assert samples[right].var() == pytest.approx(target_variances[1], rel=0.15)


def test_sampler_is_reproducible_and_traced_once():
    sigmas = get_sigmas(1.0, 0.1, 6)
    calls = []
    exact = mixture_score_fn(sigmas)

    def counting_score(x, level):
        calls.append(1)  # a Python side effect: runs once per trace, not per step
        return exact(x, level)

    sampler = AnnealedLangevin(counting_score, sigmas, n_steps_each=4, step_lr=1e-3, return_intermediates=True)
    first, intermediates = sampler.sample((3, 5), seed=11)
    again, _ = sampler.sample((3, 5), seed=11)
    other, _ = sampler.sample((3, 5), seed=12)
    assert intermediates.shape == (6, 3, 5)
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    np.testing.assert_array_equal(intermediates[-1].numpy(), first.numpy())  # no denoising step asked
    assert not np.allclose(first.numpy(), other.numpy())
    assert sampler.tracing_count == 1 and len(calls) == 1  # one trace over 6 levels x 4 steps and 3 calls

    # the same core eagerly gives the same chain as the compiled function (stateless, seeded noise)
    start = tf.random.stateless_uniform((3, 5), seed=[0, 1])
    compiled = AnnealedLangevin(exact, sigmas, 4, 1e-3, denoise=True)(start, [5, 6])
    eager = annealed_langevin(exact, start, sigmas, 4, 1e-3, seed=[5, 6], denoise=True)
    np.testing.assert_allclose(compiled.numpy(), eager.numpy(), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------------- networks

def numpy_instance_norm_plus(x, gamma, beta, alpha, eps=1e-5):
    """Independent numpy version of instance norm++ for x (b, h, w, c) and per-example (b, c) parameters."""
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = np.sqrt(x.var(axis=(1, 2), keepdims=True) + eps)
    m = mean.mean(axis=3, keepdims=True)
    v = np.sqrt(mean.var(axis=3, keepdims=True) + eps)
    g, b, a = (p[:, None, None, :] for p in (gamma, beta, alpha))
    return g * (x - mean) / std + b + a * (mean - m) / v


def test_instance_norm_plus_matches_its_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (2, 5, 4, 3)).astype(np.float32)
    labels = np.array([2, 0])
    norm = ConditionalInstanceNorm2dPlus(3)
    norm(x, labels)
    gamma, beta, alpha = (rng.normal(size=(3, 3)).astype(np.float32) for _ in range(3))
    norm.set_weights([gamma, beta, alpha])
    expected = numpy_instance_norm_plus(x.astype(np.float64), gamma[labels], beta[labels], alpha[labels])
    np.testing.assert_allclose(norm(x, labels).numpy(), expected, rtol=1e-4, atol=1e-4)
    plain = InstanceNorm2dPlus()
    plain(x)
    plain.set_weights([gamma[0], beta[0], alpha[0]])
    expected = numpy_instance_norm_plus(x.astype(np.float64), gamma[[0, 0]], beta[[0, 0]], alpha[[0, 0]])
    np.testing.assert_allclose(plain(x).numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(96, 64, 1), (28, 28, 1), (32, 32, 1), (32, 32, 3), (15, 9, 1)])
def test_score_network_keeps_the_input_shape(shape):
    keras.utils.set_random_seed(0)
    config = Config(n_filters=4, version="v1", num_classes=3)
    model = build_score_network(config, shape)
    x = tf.random.uniform((2, *shape), seed=1)
    labels = tf.constant([0, 2])
    out = model([x, labels], training=False)
    assert out.shape == (2, *shape) and out.dtype == tf.float32
    assert np.all(np.isfinite(out.numpy()))
    # conditioning: gammas start as N(1, 0.02) per class, so another label gives another output at init
    other = model([x, tf.constant([1, 1])], training=False)
    assert np.abs(out.numpy() - other.numpy()).max() > 1e-6
    # per example: the first example's output depends on its own label only
    alone = model([x[:1], labels[:1]], training=False)
    # (to float32 noise: oneDNN picks its convolution algorithm by batch size, up to ~4e-5 apart on outputs of
    # order 1; another example's label leaking in would move them by ~1e-2)
    np.testing.assert_allclose(alone.numpy(), out.numpy()[:1], rtol=1e-4, atol=2e-4)


def test_dsm_loss_reaches_every_weight_of_the_network():
    keras.utils.set_random_seed(0)
    model = build_score_network(Config(n_filters=4, version="v1", num_classes=3), (8, 8, 1))
    data = tf.random.uniform((3, 8, 8, 1), seed=4)
    with tf.GradientTape() as tape:
        loss = dsm_loss(model, data, get_sigmas(1.0, 0.1, 3), seed=[0, 9])
    gradients = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(float(loss)) and len(gradients) == len(model.trainable_variables)
    missing = [v.name for v, g in zip(model.trainable_variables, gradients) if g is None]
    assert not missing, missing
    assert all(np.all(np.isfinite(tf.convert_to_tensor(g).numpy())) for g in gradients)  # gathers: IndexedSlices


def test_v2_network_divides_by_sigma_and_shares_the_call_signature():
    keras.utils.set_random_seed(0)
    config = Config(n_filters=4, version="v2", num_classes=6, sigma1=2.0, sigmaL=0.05)
    model = build_score_network(config, (28, 28, 1))
    sigmas = get_sigmas(2.0, 0.05, 6)
    image = tf.random.uniform((1, 28, 28, 1), seed=3)
    out = model([tf.concat([image, image], axis=0), tf.constant([0, 5])], training=False).numpy()
    assert out.shape == (2, 28, 28, 1)
    # out = f(x) / sigma: the same f for both labels, so out[0] * sigma_0 == out[1] * sigma_5 (an absolute
    # tolerance on the scale of f: a ratio of two outputs near zero would magnify float rounding)
    unscaled = np.abs(out[1] * sigmas[5]).max()
    np.testing.assert_allclose(out[0] * sigmas[0], out[1] * sigmas[5], rtol=1e-4, atol=1e-5 * unscaled)
    assert count_parameters(model) > 0 and "total" in parameter_summary(model)
    assert not any("sigma" in v.name for v in model.variables)  # the schedule is a constant, not a weight


class TinyConvScore(keras.Model):
    """A small trainable score model (one 3x3 conv and a bias per level): compiles in a second, unlike the
    RefineNet whose training step takes tens of seconds to trace on this CPU."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv = keras.layers.Conv2D(1, 3, padding="same")
        self.level_bias = tf.Variable(tf.zeros(num_classes), name="level_bias")

    def call(self, inputs, training=None):
        x, labels = inputs
        return self.conv(x) + tf.reshape(tf.gather(self.level_bias, labels), [-1, 1, 1, 1])


def test_ema_follows_the_weights_and_swaps_back_exactly(tmp_path):
    keras.utils.set_random_seed(0)
    model = TinyConvScore(3)
    model([tf.zeros((1, 8, 8, 1)), tf.zeros((1,), tf.int32)])
    ema = EMAWeights(model, rate=0.9)
    optimizer = keras.optimizers.Adam(1e-2)
    sigmas = get_sigmas(1.0, 0.1, 3)
    generator = tf.random.Generator.from_seed(0)
    data = tf.random.uniform((4, 8, 8, 1), seed=2)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = dsm_loss(model, data, sigmas, generator=generator)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        ema.update()

    initial = [v.numpy() for v in model.trainable_variables]
    train_step()
    after_one = [v.numpy() for v in model.trainable_variables]
    for shadow, w0, w1 in zip(ema.shadow, initial, after_one):  # shadow = 0.9 w0 + 0.1 w1 after one step
        np.testing.assert_allclose(shadow.numpy(), 0.9 * w0 + 0.1 * w1, rtol=1e-5, atol=1e-7)
    for _ in range(4):
        train_step()
    raw = [v.numpy() for v in model.trainable_variables]
    averaged = [s.numpy() for s in ema.shadow]
    assert all(not np.allclose(r, a) for r, a in zip(raw, averaged))
    with ema.swapped():
        for variable, a in zip(model.trainable_variables, averaged):
            np.testing.assert_array_equal(variable.numpy(), a)
    for variable, r in zip(model.trainable_variables, raw):
        np.testing.assert_array_equal(variable.numpy(), r)
    # the shadows are tf.Variables that a checkpoint saves and restores (the model is not saved through the EMA)
    path = tf.train.Checkpoint(ema=ema).save(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path)
             if name != "_CHECKPOINTABLE_OBJECT_GRAPH" and not name.startswith("save_counter")]
    assert len(saved) == len(ema.shadow) and all(name.startswith("ema/shadow/") for name in saved)
    restored = EMAWeights(model, rate=0.9)
    tf.train.Checkpoint(ema=restored).restore(path).assert_consumed()
    for s, a in zip(restored.shadow, averaged):
        np.testing.assert_array_equal(s.numpy(), a)
    ema.copy_to_model()
    for variable, a in zip(model.trainable_variables, averaged):
        np.testing.assert_array_equal(variable.numpy(), a)


def test_ncsn_sampler_runs_the_network_compiled_once():
    keras.utils.set_random_seed(0)
    config = Config(n_filters=4, version="v1", num_classes=3)
    model = build_score_network(config, (8, 8, 1))
    sampler = ncsn_sampler(model, get_sigmas(1.0, 0.1, 3), n_steps_each=2, step_lr=1e-4)
    first = sampler.sample((2, 8, 8, 1), seed=0)
    second = sampler.sample((2, 8, 8, 1), seed=1)
    assert first.shape == (2, 8, 8, 1) and np.all(np.isfinite(first.numpy()))
    assert not np.allclose(first.numpy(), second.numpy()) and sampler.tracing_count == 1


# ----------------------------------------------------------------------------------------------------- techniques

def test_technique1_equals_brute_force_pairwise_distance():
    rng = np.random.default_rng(0)
    data = rng.random((53, 4, 3, 2)).astype(np.float32)
    expected = pdist(data.reshape(53, -1).astype(np.float64)).max()
    batches = [data[:10], data[10:11], data[11:40], data[40:]]
    for block_size in (1, 7, 16, 53, 100):
        assert techniques.max_pairwise_distance(data, block_size) == pytest.approx(expected, rel=1e-12)
        assert techniques.max_pairwise_distance(batches, block_size) == pytest.approx(expected, rel=1e-12)
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(8)
    assert techniques.max_pairwise_distance(dataset, 20) == pytest.approx(expected, rel=1e-6)
    assert techniques.max_pairwise_distance(iter(batches), 9) == pytest.approx(expected, rel=1e-12)


def test_technique1_script(tmp_path):
    from datasets import preprocessing as pp

    rng = np.random.default_rng(1)
    parts = [rng.uniform(-100, 20, (n, 96, 64)).astype(np.float32) for n in (5, 4)]
    for i, part in enumerate(parts):
        pp.write_tfrecord(tmp_path / "piano" / "train" / f"s{i}.tfrecord", part, f"s{i}.wav", "dB")
    proc = run_script("technique1_ncsnv2.py", "--dataset", str(tmp_path / "piano"), "--block_size", "4")
    assert proc.returncode == 0, proc.stderr
    found = float(re.search(r"^sigma1: (\S+)$", proc.stdout, re.M).group(1))
    scaled = (np.concatenate(parts).astype(np.float64) + 100.0) / 120.0  # dB -> [0, 1]
    assert found == pytest.approx(pdist(scaled.reshape(9, -1)).max(), rel=1e-5)
    assert_one_line_error(run_script("technique1_ncsnv2.py", "--dataset", str(tmp_path / "violin")), "does not exist")


@pytest.mark.parametrize("dim", [8, 784, 3072, 6144])
def test_technique2_gamma_solves_its_equation(dim):
    gamma = techniques.geometric_ratio(dim)
    root = math.sqrt(2 * dim) * (gamma - 1)
    assert gamma > 1
    assert stats.norm.cdf(root + 3 * gamma) - stats.norm.cdf(root - 3 * gamma) == pytest.approx(0.5, abs=1e-9)
    levels = techniques.num_levels(50.0, 0.01, gamma)
    assert 50.0 / gamma ** (levels - 1) <= 0.01 < 50.0 / gamma ** (levels - 2)
    with pytest.raises(ValueError):
        techniques.geometric_ratio(3)


def test_technique4_step_minimises_the_variance_ratio():
    sigmaL, gamma, steps = 0.01, (50.0 / 0.01) ** (1 / 231), 5  # NCSNv2's CIFAR-10: L = 232, T = 5
    eps = techniques.langevin_step_size(sigmaL, gamma, steps)
    assert eps == pytest.approx(6.2e-6, rel=0.03)  # the paper's (and its config's) step_lr for CIFAR-10
    # eq. (6) against the variance recurrence it sums: T steps of size eps sigma^2 / sigma_L^2 on N(0, sigma^2)
    sigma = 0.3
    variance, step = (gamma * sigma) ** 2, eps * sigma ** 2 / sigmaL ** 2
    for _ in range(steps):
        variance = (1 - step / sigma ** 2) ** 2 * variance + 2 * step
    ratio = techniques.variance_ratio(eps, sigmaL, gamma, steps)
    assert variance / sigma ** 2 == pytest.approx(ratio, rel=1e-10)
    # the ratio is above 1 for every eps (no root): eps is its minimum
    for other in (0.9 * eps, 1.1 * eps, 0.5 * eps, 2 * eps):
        assert techniques.variance_ratio(other, sigmaL, gamma, steps) > ratio > 1.0


def test_technique2and4_script_prints_a_config_snippet(tmp_path):
    proc = run_script("technique2and4_ncsnv2.py", "--sigma1", "30", "--sigmaL", "0.01", "--height", "96",
                      "--width", "64", "--T", "8")
    assert proc.returncode == 0, proc.stderr
    snippet = proc.stdout.split("config snippet:\n", 1)[1]
    path = tmp_path / "schedule.yml"
    path.write_text(snippet)
    config = load_config(path)
    recipe = techniques.schedule_recipe(30.0, 0.01, 96 * 64, 8)
    assert config.sigma1 == 30.0 and config.sigmaL == 0.01 and config.T == 8
    assert config.num_classes == recipe["num_classes"] and config.progression == "geometric"
    assert config.step_lr == pytest.approx(recipe["step_lr"], rel=1e-5)
    bad = run_script("technique2and4_ncsnv2.py", "--sigma1", "30", "--dim", "2", "--T", "8")
    assert bad.returncode == 2 and bad.stderr.startswith("error: no geometric ratio")


def test_sampler_names_the_level_and_step_where_nan_appears():
    from ncsn.sampling import AnnealedLangevin, SamplingDiverged

    sigmas = np.array([1.0, 0.5, 0.1], np.float32)

    def exploding(x, level):  # finite until level 1 (sigma 0.5), then a NaN direction
        return tf.where(level >= 1, tf.fill(tf.shape(x), np.float32(np.nan)), -x)

    sampler = AnnealedLangevin(exploding, sigmas, n_steps_each=4, step_lr=1e-3)
    with pytest.raises(SamplingDiverged, match=r"noise level 2/3 \(sigma 0.5\), step 1/4"):
        sampler.sample((2, 3), seed=0)
    fine = AnnealedLangevin(lambda x, level: -x, sigmas, n_steps_each=4, step_lr=1e-3)
    assert np.all(np.isfinite(fine.sample((2, 3), seed=0).numpy()))


def test_restore_uses_the_ema_weights_and_rejects_a_mismatched_config(tmp_path):
    from core.config import Config, save_config
    from core.errors import UserError
    from ncsn.checkpoints import restore_score_network
    from ncsn.networks import EMAWeights, build_score_network

    config = Config(n_filters=4, num_classes=3, height=16, width=16, ema=True)
    model = build_score_network(config, (16, 16, 1))
    ema = EMAWeights(model, 0.5)
    for variable in model.trainable_variables:  # a "training step": raw weights move, the EMA lags behind
        variable.assign_add(tf.ones_like(variable))
    ema.update()
    save_config(config, tmp_path / "run" / "config.yml")
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model, ema=ema), str(tmp_path / "run" / "tf_ckpts"), 1)
    manager.save()
    restored, _ = restore_score_network(tmp_path / "run")
    for shadow, raw, loaded in zip(ema.shadow, model.trainable_variables, restored.trainable_variables):
        np.testing.assert_array_equal(loaded.numpy(), shadow.numpy())
        assert not np.array_equal(loaded.numpy(), raw.numpy()) or raw.shape == ()
    raw_restored, _ = restore_score_network(tmp_path / "run", use_ema=False)
    np.testing.assert_array_equal(raw_restored.trainable_variables[0].numpy(), model.trainable_variables[0].numpy())
    wrong = Config(n_filters=4, num_classes=5, height=16, width=16)
    with pytest.raises(UserError, match="does not fit"):
        restore_score_network(tmp_path / "run", config=wrong)
    with pytest.raises(UserError, match="does not fit"):
        restore_score_network(tmp_path / "run", config=Config(n_filters=8, num_classes=3, height=16, width=16))
