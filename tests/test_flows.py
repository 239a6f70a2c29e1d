"""Tests of flow_models: invertibility, log-dets against brute-force Jacobians, analytic densities, training.

Tiny shapes and networks (n_filters 4-8, K 1-2) so that the whole file runs in a few minutes on two CPU cores.
Every number is checked against an independent computation (autodiff Jacobians + float64 slogdet, scipy.stats,
the closed-form entropy of a Gaussian), never against the code's own output.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

import core

tf = core.import_tensorflow()
import tensorflow_probability as tfp  # noqa: E402
import tf_keras as keras  # noqa: E402

from core.config import Config  # noqa: E402
from core.errors import UserError  # noqa: E402
from flow_models.bijectors import (ActNorm, AffineCoupling, ConditionalGaussianSplit, InvertibleConv1x1,  # noqa: E402
                                   LearnedGaussianPrior, MaskedAffineCoupling, Squeeze)
from flow_models.glow import Glow, MultiScaleFlow, RealNVP, build_flow  # noqa: E402
from conftest import brute_force_logdet, digits_bits_per_dim, perturb, random_input  # noqa: E402

tfb = tfp.bijectors
tfd = tfp.distributions


# (factory, channels of the input) for every layer
LAYERS = {
    "act_norm": (lambda c: ActNorm(c), 2),
    "conv1x1": (lambda c: InvertibleConv1x1(c, seed=3), 2),
    "coupling_sigmoid": (lambda c: AffineCoupling(c, 4, "sigmoid"), 2),
    "coupling_tanh": (lambda c: AffineCoupling(c, 4, "tanh"), 2),
    "checkerboard_0": (lambda c: MaskedAffineCoupling(c, 4, "checkerboard", 0), 2),
    "checkerboard_1_sigmoid": (lambda c: MaskedAffineCoupling(c, 4, "checkerboard", 1, "sigmoid"), 2),
    "channel_0": (lambda c: MaskedAffineCoupling(c, 4, "channel", 0), 2),
    "channel_1": (lambda c: MaskedAffineCoupling(c, 4, "channel", 1), 2),
    "squeeze": (lambda c: Squeeze(), 4),
    "split": (lambda c: ConditionalGaussianSplit(c), 4),
    "top_prior": (lambda c: LearnedGaussianPrior((4, 4, c)), 2),
}


def make_layer(name, seed=0):
    factory, channels = LAYERS[name]
    layer = factory(channels)
    x = random_input((5, 4, 4, channels), seed) * 0.7 + 0.3
    if isinstance(layer, ActNorm):
        layer.initialize(x)
    perturb(layer, seed + 1)
    return layer, channels


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_inverse_of_forward(name):
    layer, channels = make_layer(name)
    x = random_input((3, 4, 4, channels), 10)
    y, logdet = layer.forward_and_log_det(x)
    x_back, inverse_logdet = layer.inverse_and_log_det(y)
    np.testing.assert_allclose(x_back.numpy(), x.numpy(), atol=1e-4)
    np.testing.assert_allclose(inverse_logdet.numpy(), -logdet.numpy(), rtol=1e-5, atol=1e-4)
    assert logdet.shape == (3,)
    # TFP's API (tf.identity: a new tensor, so TFP's cache cannot answer the inverse without computing it)
    y_tfp = layer.forward(x)
    x_tfp = layer.inverse(tf.identity(y_tfp))
    np.testing.assert_allclose(x_tfp.numpy(), x.numpy(), atol=1e-4)
    np.testing.assert_allclose(layer.forward_log_det_jacobian(x, event_ndims=3).numpy(), logdet.numpy(),
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_log_det_matches_jacobian(name):
    layer, channels = make_layer(name, seed=20)
    x = random_input((1, 4, 4, channels), 21)
    expected = brute_force_logdet(lambda t: layer.forward_and_log_det(t)[0], x)
    _, logdet = layer.forward_and_log_det(x)
    assert logdet.numpy()[0] == pytest.approx(expected, abs=2e-3)
    if name in ("squeeze",):
        assert expected == pytest.approx(0.0, abs=1e-6)
    else:
        assert abs(expected) > 0.05  # the perturbation made it a non-trivial test


def small_flows(input_shape=(4, 4, 2), L=2, K=1, n_filters=4, seed=30):
    flows = [Glow(input_shape, L, K, n_filters), Glow(input_shape, L, K, n_filters, coupling_scale="tanh"),
             RealNVP(input_shape, L, K, n_filters)]
    x = random_input((16,) + tuple(input_shape), seed) * 0.3 + 0.1
    for index, flow in enumerate(flows):
        flow.initialize(x)
        perturb(flow, seed + index, scale=0.1)
    return flows


@pytest.mark.parametrize("index", [0, 1, 2])
def test_whole_flow_inverse_and_log_det(index):
    flow = small_flows()[index]
    x = random_input((1, 4, 4, 2), 40) * 0.3
    latents, logdet = flow.forward(x)
    assert [tuple(z.shape[1:]) for z in latents] == flow.latent_shapes == [(2, 2, 4), (1, 1, 16)]
    np.testing.assert_allclose(flow.inverse(latents).numpy(), x.numpy(), atol=1e-4)

    def to_latents(t):
        return tf.concat([tf.reshape(z, [-1]) for z in flow.forward(t)[0]], axis=0)

    assert logdet.numpy()[0] == pytest.approx(brute_force_logdet(to_latents, x), abs=2e-3)


@pytest.mark.parametrize("kind", ["glow", "realnvp"])
def test_flow_round_trip_on_spectrogram_shape(kind):
    config = Config(L=3, K=1, n_filters=4)
    flow = build_flow(config, (96, 64, 1), kind=kind)
    x = tf.random.stateless_uniform((2, 96, 64, 1), seed=[1, 2]) - 0.5
    flow.initialize(x)
    perturb(flow, 50, scale=0.05)
    latents, _ = flow.forward(x)
    assert [tuple(z.shape[1:]) for z in latents] == [(48, 32, 2), (24, 16, 4), (12, 8, 16)]
    np.testing.assert_allclose(flow.inverse(latents).numpy(), x.numpy(), atol=1e-4)
    assert np.all(np.isfinite(flow.bits_per_dim(x).numpy()))
    assert "total" in flow.summary()


def test_input_sizes():
    assert Glow((28, 28, 1), 2, 1, 4).latent_shapes == [(14, 14, 2), (7, 7, 8)]  # 28 -> 14 -> 7
    assert RealNVP((32, 32, 3), 2, 1, 4).latent_shapes == [(16, 16, 6), (8, 8, 24)]
    with pytest.raises(ValueError, match="7x7"):
        Glow((28, 28, 1), 3, 1, 4)
    with pytest.raises(UserError, match="odd"):
        build_flow(Config(L=3, K=1, n_filters=4), (28, 28, 1))
    with pytest.raises(UserError, match="n_filters"):
        build_flow(Config(L=3, K=1), (28, 28, 1))
    with pytest.raises(ValueError, match="even"):
        Squeeze().forward(tf.zeros((1, 5, 4, 1)))


def test_act_norm_initialisation_standardises_the_batch():
    rng = np.random.default_rng(60)
    x = (rng.standard_normal((8, 6, 5, 3)) * [0.1, 2.0, 5.0] + [1.0, -3.0, 0.2]).astype(np.float32)
    layer = ActNorm(3)
    assert not bool(layer.initialized.numpy())
    layer.initialize(x)
    assert bool(layer.initialized.numpy())
    y = layer.forward(x).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, atol=1e-4)


def test_act_norm_flow_log_prob_is_the_gaussian_density():
    """z = s x + b per channel and, with learntop, eps = (z - m) / e^l per entry, eps ~ N(0, 1). So
    x = (e^l eps + m - b) / s ~ N((m - b) / s, (e^l / s)^2), independently per entry."""
    shape = (4, 4, 2)
    act_norm = ActNorm(2)
    act_norm.log_scale.assign([0.3, -0.7])
    act_norm.bias.assign([0.5, -1.2])
    s, b = np.exp([0.3, -0.7]), np.array([0.5, -1.2])
    x = random_input((3,) + shape, 70).numpy() * 2.0

    flow = MultiScaleFlow(shape, [[act_norm]], [shape])
    expected = scipy.stats.norm.logpdf(x, loc=-b / s, scale=1.0 / s).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(flow.log_prob(x).numpy(), expected, rtol=1e-5)
    # the same density through TFP's own TransformedDistribution (sampling direction = inverse of ours)
    base = tfd.Independent(tfd.Normal(tf.zeros(shape), 1.0), reinterpreted_batch_ndims=3)
    transformed = tfd.TransformedDistribution(base, tfb.Invert(act_norm))
    np.testing.assert_allclose(transformed.log_prob(x).numpy(), expected, rtol=1e-5)
    dims = np.prod(shape)
    np.testing.assert_allclose(flow.bits_per_dim(x).numpy(), -expected / (dims * math.log(2)), rtol=1e-5)
    np.testing.assert_allclose(flow.bits_per_dim(x, n_bins=256).numpy(), -expected / (dims * math.log(2)) + 8,
                               rtol=1e-5)
    # temperature 0: the mode -b / s
    np.testing.assert_allclose(flow.sample(2, temperature=0.0).numpy(),
                               np.broadcast_to(-b / s, (2,) + shape), rtol=1e-6)

    prior = LearnedGaussianPrior(shape)
    rng = np.random.default_rng(71)
    m, l = rng.standard_normal(shape) * 0.5, rng.standard_normal(shape) * 0.3
    prior.mean.assign(m.astype(np.float32))
    prior.log_std.assign(l.astype(np.float32))
    flow = MultiScaleFlow(shape, [[act_norm, prior]], [shape])
    expected = scipy.stats.norm.logpdf(x, loc=(m - b) / s, scale=np.exp(l) / s).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(flow.log_prob(x).numpy(), expected, rtol=1e-5)


def test_sampling_shapes_and_temperature_zero():
    flow = Glow((8, 8, 3), 2, 1, 4)
    flow.initialize(random_input((16, 8, 8, 3), 80) * 0.2)
    perturb(flow, 81, scale=0.05)
    samples = flow.sample(5, temperature=0.7, seed=3)
    assert samples.shape == (5, 8, 8, 3) and np.all(np.isfinite(samples.numpy()))
    np.testing.assert_array_equal(samples.numpy(), flow.sample(5, temperature=0.7, seed=3).numpy())
    mode = flow.sample(3, temperature=0.0).numpy()
    np.testing.assert_allclose(mode, np.broadcast_to(mode[:1], mode.shape), atol=1e-6)
    zeros = [tf.zeros((1,) + shape) for shape in flow.latent_shapes]
    np.testing.assert_allclose(mode[:1], flow.inverse(zeros).numpy(), atol=1e-6)
    # at temperature 0 the latents are all zero, the maximum of the base density
    latents, _ = flow.forward(mode)
    assert max(float(tf.reduce_max(tf.abs(z))) for z in latents) < 1e-3


def test_variables_are_tracked_and_checkpoint_round_trip(tmp_path):
    coupling = AffineCoupling(4, 8)
    names = {v.name for v in coupling.trainable_variables}
    assert len(coupling.network.trainable_variables) == 6
    assert {v.name for v in coupling.network.trainable_variables} <= names

    flow = Glow((8, 8, 1), 2, 2, 4)
    variables = flow.trainable_variables
    assert len(variables) > 0 and all(isinstance(v, tf.Variable) for v in variables)
    x = random_input((4, 8, 8, 1), 90) * 0.3
    flow.initialize(x)
    perturb(flow, 91, scale=0.05)
    before = flow.log_prob(x).numpy()
    path = tf.train.Checkpoint(flow=flow).write(str(tmp_path / "ckpt"))

    restored = Glow((8, 8, 1), 2, 2, 4)
    assert not np.allclose(restored.log_prob(x).numpy(), before)
    tf.train.Checkpoint(flow=restored).read(path).assert_consumed()
    np.testing.assert_allclose(restored.log_prob(x).numpy(), before, rtol=1e-6)
    act_norms = [b for level in restored.levels for b in level if isinstance(b, ActNorm)]
    assert act_norms and all(bool(a.initialized.numpy()) for a in act_norms)


def gaussian_blocks(n, cholesky, rng):
    """(n, 4, 4, 1) images whose four 2x2 blocks are independent N(0, C), C = cholesky cholesky^T, in the
    channel order of a 2x2 squeeze."""
    blocks = rng.standard_normal((n, 2, 2, 4)) @ cholesky.T
    return tf.nn.depth_to_space(blocks.astype(np.float32), 2)


def test_tiny_glow_learns_a_correlated_gaussian():
    """A Glow can represent this density exactly (the first level's ActNorm and 1x1 conv can whiten a block), so
    its bits/dim must approach the true entropy H / (D ln 2), H = 4 * 0.5 log det(2 pi e C) nats per image."""
    rng = np.random.default_rng(100)
    mixing = rng.standard_normal((4, 4)) * 0.1 + 0.15  # positively correlated pixels
    covariance = mixing @ mixing.T + 1e-3 * np.eye(4)
    cholesky = np.linalg.cholesky(covariance)
    entropy_bpd = 4 * 0.5 * np.linalg.slogdet(2 * np.pi * np.e * covariance)[1] / (16 * math.log(2))
    test_data = gaussian_blocks(4096, cholesky, rng)

    flow = Glow((4, 4, 1), 2, 2, 8)
    flow.initialize(gaussian_blocks(512, cholesky, rng))
    initial = float(tf.reduce_mean(flow.bits_per_dim(test_data)))
    optimizer = keras.optimizers.Adam(5e-3)
    variables = flow.trainable_variables

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(flow.bits_per_dim(batch))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    for _ in range(400):
        step(gaussian_blocks(256, cholesky, rng))
    final = float(tf.reduce_mean(flow.bits_per_dim(test_data)))
    print(f"bits/dim: initial {initial:.3f}, final {final:.3f}, true entropy {entropy_bpd:.3f}")
    assert initial - entropy_bpd > 0.3  # the correlations are worth something
    assert final < initial - 0.25
    assert abs(final - entropy_bpd) < 0.05  # Monte-Carlo error of the test set: ~0.005 bits/dim


def test_tiny_glow_learns_real_digit_images_better_than_a_gaussian_fit():
    """8x8 handwritten digits (shipped with scikit-learn, offline), dequantised to [-0.5, 0.5]: a tiny Glow
    trained a few hundred steps beats the untrained model and an independent Gaussian per pixel on test data."""
    untrained, gaussian_bpd, trained = digits_bits_per_dim("glow")
    print(f"digits test bits/dim: untrained {untrained:.3f}, Gaussian fit {gaussian_bpd:.3f}, trained {trained:.3f}")
    assert trained < untrained - 1.0, (untrained, trained)
    assert trained < gaussian_bpd - 0.1, (gaussian_bpd, trained)
