"""Flow++ (flow_models/flowpp.py): the logistic-mixture CDF against scipy, the bisection inverse, the coupling's
and the whole flow's inverse and log-det against brute-force Jacobians, and a tiny Flow++ learning 8x8 digits."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import core

tf = core.import_tensorflow()

from core.config import Config  # noqa: E402
from flow_models import flowpp  # noqa: E402
from flow_models.glow import FlowPlusPlus, build_flow  # noqa: E402
from conftest import brute_force_logdet, digits_bits_per_dim, perturb, random_input  # noqa: E402


def mixture(seed: int, shape=(3, 5), k: int = 3):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal(shape + (k,)).astype(np.float32)
    means = (2 * rng.standard_normal(shape + (k,))).astype(np.float32)
    log_scales = rng.uniform(-2, 1, shape + (k,)).astype(np.float32)
    return logits, means, log_scales


def test_mixture_density_and_cdf_match_scipy():
    logits, means, log_scales = mixture(0)
    x = np.random.default_rng(1).uniform(-6, 6, (3, 5)).astype(np.float32)
    log_pdf, log_cdf, log_sf = (t.numpy() for t in flowpp.mixture_log_cdf_terms(x, logits, means, log_scales))
    weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    components = scipy.stats.logistic(means.astype(np.float64), np.exp(log_scales.astype(np.float64)))
    pdf = (weights * components.pdf(x[..., None].astype(np.float64))).sum(-1)
    cdf = (weights * components.cdf(x[..., None].astype(np.float64))).sum(-1)
    np.testing.assert_allclose(np.exp(log_pdf), pdf, rtol=1e-4)
    np.testing.assert_allclose(np.exp(log_cdf), cdf, rtol=1e-4)
    np.testing.assert_allclose(np.exp(log_sf), 1 - cdf, rtol=1e-4, atol=1e-7)


def test_the_bisection_inverts_the_mixture_cdf_into_the_tails():
    logits, means, log_scales = mixture(2)
    x = np.random.default_rng(3).uniform(-15, 15, (3, 5)).astype(np.float32)  # far into the tails too
    target = flowpp.mixture_logit_cdf(x, logits, means, log_scales)
    back = flowpp.invert_mixture_logit_cdf(target, logits, means, log_scales).numpy()
    np.testing.assert_allclose(back, x, atol=1e-4)


def coupling(seed: int, channels: int = 2, scale: float = 0.3):
    tf.keras.utils.set_random_seed(seed)  # the networks' initial weights
    layer = flowpp.LogisticMixtureCoupling(channels, 8, n_components=3)
    perturb(layer, seed, scale=scale)  # the zero-initialised output layer too: a non-trivial mixture
    return layer


def derivative(layer, x):
    """dy_b / dx_b of the coupling, element-wise (its log-det terms): (batch, h, w, c/2)."""
    half = layer.half
    logits, means, log_scales, a, _ = layer._mixture(x[..., :half])
    log_pdf, log_cdf, log_sf = flowpp.mixture_log_cdf_terms(x[..., half:], logits, means, log_scales)
    return np.exp((log_pdf - log_cdf - log_sf + a).numpy())


@pytest.mark.parametrize("seed", [10, 30, 31, 32])
def test_coupling_inverse_of_forward_and_its_log_det_against_the_jacobian(seed):
    layer = coupling(seed, channels=4)
    x = random_input((3, 4, 4, 4), 11)
    y, logdet = layer.forward_and_log_det(x)
    x_back, inverse_logdet = layer.inverse_and_log_det(y)
    # y is float32: where the map is flat (dy/dx ~ 1e-4, two narrow components far apart) its rounding alone
    # moves the exact inverse by ulp(y) / (dy/dx). So: 1e-4 plus that, and y itself recovered to its rounding.
    rounding = 4 * np.finfo(np.float32).eps * np.maximum(1.0, np.abs(y.numpy()[..., 2:])) / derivative(layer, x)
    error = np.abs(x_back.numpy() - x.numpy())
    assert np.all(error[..., :2] == 0)
    assert np.all(error[..., 2:] <= 1e-4 + rounding), (error[..., 2:] - rounding).max()
    assert np.mean(rounding < 1e-5) > 0.75  # mostly well conditioned: the 1e-4 bound is what is tested there
    np.testing.assert_allclose(layer.forward_and_log_det(x_back)[0].numpy(), y.numpy(), rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(inverse_logdet.numpy(), -logdet.numpy(), rtol=1e-5, atol=1e-3)
    small = coupling(12, scale=1.0)
    x1 = random_input((1, 2, 2, 2), 13)
    expected = brute_force_logdet(lambda t: small.forward_and_log_det(t)[0], x1)
    assert small.forward_and_log_det(x1)[1].numpy()[0] == pytest.approx(expected, abs=2e-3)
    assert abs(expected) > 0.05


def test_whole_flowpp_inverse_and_log_det():
    flow = FlowPlusPlus((4, 4, 2), L=2, K=1, n_filters=8, n_components=3)
    x = random_input((16, 4, 4, 2), 20) * 0.3 + 0.1
    flow.initialize(x)
    perturb(flow, 21, scale=0.1)
    x1 = x[:1]
    latents, logdet = flow.forward(x1)
    np.testing.assert_allclose(flow.inverse(latents).numpy(), x1.numpy(), atol=1e-4)

    def to_latents(t):
        return tf.concat([tf.reshape(z, [-1]) for z in flow.forward(t)[0]], axis=0)

    assert logdet.numpy()[0] == pytest.approx(brute_force_logdet(to_latents, x1), abs=2e-3)
    assert build_flow(Config(L=2, K=1, n_filters=4), (8, 8, 1), kind="flowpp").input_shape == (8, 8, 1)


@pytest.mark.slow
def test_tiny_flowpp_learns_real_digit_images_better_than_a_gaussian_fit():
    """As the Glow test: 8x8 digits dequantised to [-0.5, 0.5], a few hundred CPU steps beat the untrained model
    and an independent Gaussian per pixel on test data."""
    untrained, gaussian_bpd, trained = digits_bits_per_dim("flowpp")
    print(f"Flow++ digits test bits/dim: untrained {untrained:.3f}, Gaussian {gaussian_bpd:.3f}, trained {trained:.3f}")
    assert trained < untrained - 1.0, (untrained, trained)
    assert trained < gaussian_bpd - 0.1, (gaussian_bpd, trained)


def test_the_dequantizer_density_is_the_jacobian_change_of_variables():
    deq = flowpp.VariationalDequantizer(1, 8, bin_width=0.25)
    perturb(deq, 30, scale=0.5)
    x0 = tf.constant([[[[0.25], [-0.5]], [[0.0], [0.5]]]])  # (1, 2, 2, 1)
    seed = tf.constant([3, 4])
    x, log_q = deq.dequantize(x0, seed)
    eps = tf.random.stateless_normal(tf.shape(x0), seed=seed)
    # u as a function of eps, differentiated by autodiff: log q(u) = log N(eps) - log|det du/deps|
    with tf.GradientTape() as tape:
        tape.watch(eps)
        u = tf.reshape((deq_from_eps(deq, eps, x0) - x0) / deq.bin_width, [-1])
    jacobian = tape.jacobian(u, eps).numpy().reshape(4, 4).astype(np.float64)
    log_normal = scipy.stats.norm.logpdf(eps.numpy().astype(np.float64)).sum()
    expected = log_normal - np.linalg.slogdet(jacobian)[1] + 4 * np.log(deq.bin_width)  # density of x, not of u
    assert float(log_q[0]) + 4 * np.log(deq.bin_width) == pytest.approx(expected, abs=1e-3)
    assert np.all((x.numpy() > x0.numpy()) & (x.numpy() < x0.numpy() + 0.25))  # inside the bins


def deq_from_eps(deq, eps, x0):
    """The dequantizer's map eps -> x, written out again from its parts (for the Jacobian)."""
    parity = tf.cast((tf.range(2)[:, None] + tf.range(2)[None, :]) % 2, tf.float32)[None, :, :, None]
    v = eps
    for index, network in enumerate(deq.networks):
        mask = parity if index % 2 == 0 else 1.0 - parity
        out = network(tf.concat([mask * v, x0], axis=-1))
        v = v * tf.exp((1.0 - mask) * tf.tanh(out[..., 1:])) + (1.0 - mask) * out[..., :1]
    return x0 + deq.bin_width * tf.sigmoid(v)


def test_the_dequantization_bound_is_below_the_exact_discrete_log_likelihood():
    """A model whose bins have a closed-form probability (independent logistics, P(bin) = F(x0 + w) - F(x0)):
    the variational bound, averaged over many draws, stays below log P(x0) for a perturbed q, and the uniform
    bound (the zero-initialised q is not uniform, so it is computed directly) too."""
    width, mean, scale = 0.25, 0.1, 0.3
    logistic = scipy.stats.logistic(mean, scale)

    def log_prob(x):
        z = (x - mean) / scale
        return tf.reduce_sum(-z - np.log(scale) - 2.0 * tf.nn.softplus(-z), axis=[1, 2, 3])

    x0_values = np.array([[[[0.0], [-0.25]], [[0.25], [-0.5]]]], np.float32)
    exact = np.log(logistic.cdf(x0_values + width) - logistic.cdf(x0_values)).sum()
    deq = flowpp.VariationalDequantizer(1, 8, bin_width=width)
    perturb(deq, 40, scale=0.3)
    x0 = tf.constant(np.repeat(x0_values, 4000, axis=0))
    bounds = deq.log_likelihood_bound(log_prob, x0, tf.constant([5, 6])).numpy()
    error = 3 * bounds.std() / np.sqrt(len(bounds))
    assert bounds.mean() <= exact + error, (bounds.mean(), exact)
    assert bounds.mean() > exact - 2.0  # a bound, not a meaningless number
    u = np.random.default_rng(7).uniform(size=(4000, 2, 2, 1)).astype(np.float32)
    uniform = log_prob(tf.constant(x0_values + width * u)).numpy() + 4 * np.log(width)
    assert uniform.mean() <= exact + 3 * uniform.std() / np.sqrt(len(uniform))
