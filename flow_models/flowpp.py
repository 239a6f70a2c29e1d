"""Flow++ (Ho et al. 2019, "Flow++: Improving Flow-Based Generative Models with Variational Dequantization and
Architecture Design") from the bijectors of :mod:`flow_models.bijectors` (docs/algorithms.md §3).

What is here: the logistic-mixture CDF coupling (its inverse by vectorised bisection) and its conditioning network
(gated residual convolutions with multi-head self-attention over the positions), the steps of
:class:`flow_models.glow.FlowPlusPlus` (the multi-scale flow of Glow with that coupling in every step: ActNorm,
invertible 1x1 convolution, coupling), and the variational dequantizer (:class:`VariationalDequantizer`). Same
conventions as the other flows: ``forward`` maps data to latent, NHWC float32, log-dets per example in nats.
"""
from __future__ import annotations

import math

from core import import_tensorflow
from flow_models.bijectors import ActNorm, FlowBijector, InvertibleConv1x1

tf = import_tensorflow()
import tf_keras as keras  # noqa: E402

#: the smallest log-scale of a logistic component (Flow++'s clamp), for a finite density everywhere
MIN_LOG_SCALE = -7.0
#: bisection steps of the inverse: the bracket shrinks by 2^-BISECTION_STEPS (far below float32 resolution)
BISECTION_STEPS = 60


def mixture_log_cdf_terms(x, logits, means, log_scales):
    """log pdf, log cdf and log(1 - cdf) of a mixture of logistics at x, element-wise, computed in float64.

    A component far from x contributes log-sigmoid terms of size |x - mean| / scale (up to ~1e4 with the smallest
    scale), whose float32 rounding alone would move logit(F) by ~1e-4 and its inverse by more where F is flat.

    Args:
        x: (...) values; logits, means, log_scales: (..., K) the mixture's weights (unnormalised, log), means and
            log-scales per element.
    Returns:
        three (...) tensors of the dtype of x.
    """
    dtype = x.dtype
    x, logits, means, log_scales = (tf.cast(t, tf.float64) for t in (x, logits, means, log_scales))
    log_weights = tf.nn.log_softmax(logits, axis=-1)
    centred = (x[..., None] - means) * tf.exp(-log_scales)
    log_pdf = tf.reduce_logsumexp(log_weights - centred - log_scales - 2.0 * tf.nn.softplus(-centred), axis=-1)
    log_cdf = tf.reduce_logsumexp(log_weights + tf.math.log_sigmoid(centred), axis=-1)
    log_sf = tf.reduce_logsumexp(log_weights + tf.math.log_sigmoid(-centred), axis=-1)
    return tf.cast(log_pdf, dtype), tf.cast(log_cdf, dtype), tf.cast(log_sf, dtype)


def mixture_logit_cdf(x, logits, means, log_scales):
    """logit(F(x)) = log F(x) - log(1 - F(x)) of the logistic mixture, element-wise (monotone in x)."""
    _, log_cdf, log_sf = mixture_log_cdf_terms(x, logits, means, log_scales)
    return log_cdf - log_sf


def invert_mixture_logit_cdf(target, logits, means, log_scales, steps: int = BISECTION_STEPS):
    """The x with logit(F(x)) = target, element-wise, by bisection (all elements at once).

    The bracket of an element is mean +- (max |mean| + max scale (|target| + 50)): in the tails logit(F(x)) grows
    like (x - mean) / scale of the widest component, so the root lies inside it.
    """
    dtype = target.dtype
    target, logits, means, log_scales = (tf.cast(t, tf.float64) for t in (target, logits, means, log_scales))
    scale = tf.reduce_max(tf.exp(log_scales), axis=-1)
    centre = tf.reduce_max(tf.abs(means), axis=-1)
    half_width = centre + scale * (tf.abs(target) + 50.0)
    low, high = -half_width, half_width

    def body(_, low, high):
        middle = 0.5 * (low + high)
        below = mixture_logit_cdf(middle, logits, means, log_scales) < target
        return _ + 1, tf.where(below, middle, low), tf.where(below, high, middle)

    _, low, high = tf.while_loop(lambda i, *_: i < steps, body, (tf.constant(0), low, high))
    return tf.cast(0.5 * (low + high), dtype)


class ConditioningNetwork(keras.Model):
    """Flow++'s coupling network: a 3x3 convolution in, ``n_blocks`` blocks of (gated residual convolution, then
    multi-head self-attention over the h * w positions, each with a residual connection and layer norm), a 3x3
    convolution out initialised to zero (so a coupling starts at a fixed transform)."""

    def __init__(self, in_channels: int, out_channels: int, n_filters: int, n_blocks: int = 1, heads: int = 4,
                 name: str = "conditioning"):
        super().__init__(name=name)
        self.entry = keras.layers.Conv2D(n_filters, 3, padding="same")
        self.gated = [keras.layers.Conv2D(2 * n_filters, 3, padding="same") for _ in range(n_blocks)]
        self.norms = [keras.layers.LayerNormalization() for _ in range(2 * n_blocks)]
        self.attention = [keras.layers.MultiHeadAttention(heads, max(1, n_filters // heads))
                          for _ in range(n_blocks)]
        self.exit = keras.layers.Conv2D(out_channels, 3, padding="same", kernel_initializer="zeros",
                                        bias_initializer="zeros")
        self.build((None, None, None, in_channels))

    def call(self, x):
        h = self.entry(x)
        for index, (gated, attention) in enumerate(zip(self.gated, self.attention)):
            a, b = tf.split(gated(tf.nn.elu(h)), 2, axis=-1)
            h = self.norms[2 * index](h + a * tf.sigmoid(b))  # gated linear unit
            shape = tf.shape(h)
            flat = tf.reshape(h, [shape[0], shape[1] * shape[2], h.shape[-1]])
            flat = flat + attention(flat, flat)
            h = self.norms[2 * index + 1](tf.reshape(flat, shape))
        return self.exit(tf.nn.elu(h))


class LogisticMixtureCoupling(FlowBijector):
    """Flow++'s coupling: the first half of the channels x_a passes unchanged and conditions the second,
    y_b = logit(F(x_b; pi, mu, s)) * exp(a) + b, F the CDF of a K-component logistic mixture whose weights, means
    and scales, and a, b, come from the conditioning network of x_a (a = tanh of its output, a bounded log-scale).

    log-det = sum over (h, w, c/2) of log f(x_b) - log F(x_b) - log(1 - F(x_b)) + a, f the mixture's density.
    The inverse solves logit(F(x_b)) = (y_b - b) exp(-a) by bisection.
    """

    def __init__(self, channels: int, n_filters: int, n_components: int = 4, n_blocks: int = 1,
                 name: str = "logistic_mixture_coupling"):
        super().__init__(name, dict(channels=channels, n_filters=n_filters, n_components=n_components,
                                    n_blocks=n_blocks, name=name))
        if channels % 2:
            raise ValueError(f"a coupling needs an even number of channels, got {channels}")
        self.channels = int(channels)
        self.half = self.channels // 2
        self.n_components = int(n_components)
        self.network = ConditioningNetwork(self.half, self.half * (3 * self.n_components + 2), int(n_filters),
                                           n_blocks, name=f"{name}_nn")

    def _mixture(self, x_a):
        """(logits, means, log_scales) (batch, h, w, c/2, K) and (a, b) (batch, h, w, c/2)."""
        out = self.network(x_a)
        shape = tf.concat([tf.shape(out)[:3], [self.half, 3 * self.n_components + 2]], axis=0)
        out = tf.reshape(out, shape)
        k = self.n_components
        logits, means, log_scales = out[..., :k], out[..., k:2 * k], out[..., 2 * k:3 * k]
        return logits, means, tf.maximum(log_scales, MIN_LOG_SCALE), tf.tanh(out[..., 3 * k]), out[..., 3 * k + 1]

    def forward_and_log_det(self, x):
        x_a, x_b = x[..., :self.half], x[..., self.half:]
        logits, means, log_scales, a, b = self._mixture(x_a)
        log_pdf, log_cdf, log_sf = mixture_log_cdf_terms(x_b, logits, means, log_scales)
        y_b = (log_cdf - log_sf) * tf.exp(a) + b
        log_det = tf.reduce_sum(log_pdf - log_cdf - log_sf + a, axis=[1, 2, 3])
        return tf.concat([x_a, y_b], axis=-1), log_det

    def inverse_and_log_det(self, y):
        y_a, y_b = y[..., :self.half], y[..., self.half:]
        logits, means, log_scales, a, b = self._mixture(y_a)
        x_b = invert_mixture_logit_cdf((y_b - b) * tf.exp(-a), logits, means, log_scales)
        log_pdf, log_cdf, log_sf = mixture_log_cdf_terms(x_b, logits, means, log_scales)
        log_det = tf.reduce_sum(log_pdf - log_cdf - log_sf + a, axis=[1, 2, 3])
        return tf.concat([y_a, x_b], axis=-1), -log_det


def flowpp_step(index: int, step: int, channels: int, prefix: str, n_filters: int, n_components: int = 4):
    """One step of flow of Flow++: ActNorm, invertible 1x1 convolution, logistic-mixture coupling."""
    return [ActNorm(channels, name=f"{prefix}_act_norm"),
            InvertibleConv1x1(channels, seed=1000 * index + step, name=f"{prefix}_conv1x1"),
            LogisticMixtureCoupling(channels, n_filters, n_components, name=f"{prefix}_coupling")]


class VariationalDequantizer(tf.Module):
    """Flow++'s variational dequantization: noise u in (0, 1)^D for data x0 quantised to bins of width ``bin_width``
    (x0 the bins' lower edges), drawn from a conditional flow q(u | x0): eps ~ N(0, I), then ``n_steps`` affine
    couplings of eps with checkerboard masks of alternating parity whose networks also see x0, then u = sigmoid.
    The dequantised data are x0 + bin_width * u and

        log P(x0) >= E_q[ log p(x0 + bin_width u) + D log(bin_width) - log q(u | x0) ]

    (Jensen), the bound the model and q are trained on together; a uniform q gives uniform dequantization back.
    """

    def __init__(self, channels: int, n_filters: int, bin_width: float, n_steps: int = 2,
                 name: str = "dequantizer"):
        super().__init__(name=name)
        self.channels = int(channels)
        self.bin_width = float(bin_width)
        self.networks = []
        for index in range(n_steps):
            network = keras.Sequential([
                keras.layers.Conv2D(n_filters, 3, padding="same", activation="elu"),
                keras.layers.Conv2D(2 * self.channels, 3, padding="same", kernel_initializer="zeros",
                                    bias_initializer="zeros")], name=f"{name}_nn{index}")
            network.build((None, None, None, 2 * self.channels))
            self.networks.append(network)

    def dequantize(self, x0, seed):
        """(x, log q(u | x0) (batch,) nats) for x0 (batch, h, w, c), with eps drawn from the stateless ``seed``."""
        eps = tf.random.stateless_normal(tf.shape(x0), seed=seed)
        log_q = -0.5 * tf.reduce_sum(tf.square(eps) + math.log(2.0 * math.pi), axis=[1, 2, 3])
        rows, cols = tf.shape(x0)[1], tf.shape(x0)[2]
        parity = tf.cast((tf.range(rows)[:, None] + tf.range(cols)[None, :]) % 2, x0.dtype)[None, :, :, None]
        v = eps
        for index, network in enumerate(self.networks):
            mask = parity if index % 2 == 0 else 1.0 - parity  # 1: passed unchanged and conditioning
            out = network(tf.concat([mask * v, x0], axis=-1))
            shift, log_scale = (1.0 - mask) * out[..., :self.channels], (1.0 - mask) * tf.tanh(out[..., self.channels:])
            v = v * tf.exp(log_scale) + shift
            log_q -= tf.reduce_sum(log_scale, axis=[1, 2, 3])
        log_q -= tf.reduce_sum(tf.math.log_sigmoid(v) + tf.math.log_sigmoid(-v), axis=[1, 2, 3])
        return x0 + self.bin_width * tf.sigmoid(v), log_q

    def log_likelihood_bound(self, flow_log_prob, x0, seed):
        """The per-example bound E_q[log p(x) + D log(bin_width) - log q(u | x0)] (batch,) in nats, from one draw
        of u (an unbiased estimate); ``flow_log_prob(x) -> (batch,)`` the model's continuous log density."""
        x, log_q = self.dequantize(x0, seed)
        dims = tf.cast(tf.reduce_prod(tf.shape(x0)[1:]), tf.float32)
        return flow_log_prob(x) + dims * math.log(self.bin_width) - log_q
