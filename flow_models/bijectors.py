"""Layers of Glow and RealNVP as TensorFlow Probability bijectors (docs/algorithms.md §3).

Direction: every bijector here maps **data to latent** in its ``forward`` (the normalising direction of the Glow
paper), and ``forward_log_det_jacobian`` is log|det d forward / dx| per example. To get the data density with TFP's
sampling-direction convention, wrap it: ``tfd.TransformedDistribution(base, tfb.Invert(bijector))``.

Shapes: inputs are NHWC float32 ``(batch, height, width, channels)``; the event is the last three axes
(``forward_min_event_ndims = 3``), so every log-det is ``(batch,)`` in nats.

Each class writes its computation once, in ``forward_and_log_det(x) -> (y, log_det)`` and
``inverse_and_log_det(y) -> (x, log_det_of_inverse)``, side by side; TFP's ``forward``, ``inverse`` and
``*_log_det_jacobian`` call these. The flows of :mod:`flow_models.glow` call these two methods directly, which
computes a coupling's network once per step (TFP would compute it for the value and again for the log-det) and
keeps clear of TFP's bijector cache (which returns the remembered input of ``inverse(forward(x))`` without
computing anything, and would return stale values after the weights change).

Variables are created in ``__init__`` (a tfb.Bijector is a tf.Module), so ``bijector.trainable_variables`` lists
them, the coupling networks' tf-keras weights included.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from core import import_tensorflow

tf = import_tensorflow()
import tf_keras as keras  # noqa: E402  (tf-keras: its variables are tf.Variables, which TFP modules track)
import tensorflow_probability as tfp  # noqa: E402

tfb = tfp.bijectors

SCALE_FUNCTIONS = ("sigmoid", "tanh")


def _batch_size(x):
    return tf.shape(x)[0]


def _spatial_size(x):
    """h * w of an NHWC tensor, float32."""
    shape = tf.shape(x)
    return tf.cast(shape[1] * shape[2], x.dtype)


def _per_example(value, x):
    """A per-example log-det (batch,) from a value that is the same for every example."""
    return value * tf.ones([_batch_size(x)], dtype=x.dtype)


class FlowBijector(tfb.Bijector):
    """Base of the flow layers: an image-shaped event (3 axes) and the two ``*_and_log_det`` methods."""

    def __init__(self, name: str, parameters: dict):
        super().__init__(forward_min_event_ndims=3, inverse_min_event_ndims=3, validate_args=False,
                         parameters=parameters, name=name)

    def forward_and_log_det(self, x):
        """x (batch, h, w, c) -> (y, log|det dy/dx| (batch,) nats)."""
        raise NotImplementedError

    def inverse_and_log_det(self, y):
        """y -> (x, log|det dx/dy| (batch,) nats) = (x, -forward log-det at x)."""
        raise NotImplementedError

    # TFP's hooks -----------------------------------------------------------------------------------------------
    def _forward(self, x):
        return self.forward_and_log_det(x)[0]

    def _inverse(self, y):
        return self.inverse_and_log_det(y)[0]

    def _forward_log_det_jacobian(self, x):
        return self.forward_and_log_det(x)[1]

    def _inverse_log_det_jacobian(self, y):
        return self.inverse_and_log_det(y)[1]


# --------------------------------------------------------------------------------------------------- ActNorm

class ActNorm(FlowBijector):
    """Activation normalisation: y = s * x + b per channel, s = exp(log_scale).

    Data-dependent initialisation (:meth:`initialize`): on a first batch, s = 1 / std and b = -mean / std per
    channel, so that y has zero mean and unit variance per channel on that batch. The flag variable ``initialized``
    (not trained) is checkpointed with the weights, so a restored model is not initialised again.

    log-det = h * w * sum_c log|s_c| per example.
    """

    def __init__(self, channels: int, name: str = "act_norm"):
        super().__init__(name, dict(channels=channels, name=name))
        self.channels = int(channels)
        self.log_scale = tf.Variable(tf.zeros([self.channels]), name="log_scale")
        self.bias = tf.Variable(tf.zeros([self.channels]), name="bias")
        self.initialized = tf.Variable(False, trainable=False, name="initialized")

    def initialize(self, x, epsilon: float = 1e-6):
        """Set scale and bias from x (batch, h, w, c): zero mean, unit variance per channel of the output."""
        x = tf.convert_to_tensor(x, tf.float32)
        mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
        std = tf.sqrt(variance + epsilon)
        self.log_scale.assign(-tf.math.log(std))
        self.bias.assign(-mean / std)
        self.initialized.assign(True)

    def forward_and_log_det(self, x):
        y = x * tf.exp(self.log_scale) + self.bias
        return y, _per_example(_spatial_size(x) * tf.reduce_sum(self.log_scale), x)

    def inverse_and_log_det(self, y):
        x = (y - self.bias) * tf.exp(-self.log_scale)
        return x, _per_example(-_spatial_size(y) * tf.reduce_sum(self.log_scale), y)


# ---------------------------------------------------------------------------------------- invertible 1x1 conv

class InvertibleConv1x1(FlowBijector):
    """Invertible 1x1 convolution y[..., i] = sum_j W[i, j] x[..., j], LU-decomposed (Glow).

    W = P L (U + diag(sign_s * exp(log_abs_s))) with P a fixed permutation, L unit lower triangular (its strictly
    lower part trained), U strictly upper triangular (trained) and log_abs_s (trained); sign_s is fixed. The initial
    W is a random orthogonal matrix drawn with ``seed``. log-det = h * w * sum log|s|.
    """

    def __init__(self, channels: int, seed: int = 0, name: str = "invertible_conv_1x1"):
        super().__init__(name, dict(channels=channels, seed=seed, name=name))
        self.channels = c = int(channels)
        rng = np.random.default_rng(seed)
        orthogonal, _ = np.linalg.qr(rng.standard_normal((c, c)))
        permutation, lower, upper = scipy.linalg.lu(orthogonal)
        diagonal = np.diag(upper)
        self.permutation = tf.constant(permutation, tf.float32)
        self.sign_s = tf.constant(np.sign(diagonal), tf.float32)
        self.lower_mask = tf.constant(np.tril(np.ones((c, c)), -1), tf.float32)
        self.upper_mask = tf.constant(np.triu(np.ones((c, c)), 1), tf.float32)
        self.lower = tf.Variable(np.tril(lower, -1).astype(np.float32), name="lower")
        self.upper = tf.Variable(np.triu(upper, 1).astype(np.float32), name="upper")
        self.log_abs_s = tf.Variable(np.log(np.abs(diagonal)).astype(np.float32), name="log_abs_s")

    def _factors(self):
        eye = tf.eye(self.channels)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.upper_mask + tf.linalg.diag(self.sign_s * tf.exp(self.log_abs_s))
        return lower, upper

    def weight(self):
        """W (c, c)."""
        lower, upper = self._factors()
        return self.permutation @ lower @ upper

    def inverse_weight(self):
        """W^-1 (c, c) by two triangular solves."""
        lower, upper = self._factors()
        eye = tf.eye(self.channels)
        lower_inv = tf.linalg.triangular_solve(lower, eye, lower=True)
        upper_inv = tf.linalg.triangular_solve(upper, eye, lower=False)
        return upper_inv @ lower_inv @ tf.transpose(self.permutation)

    def forward_and_log_det(self, x):
        y = tf.einsum("bhwj,ij->bhwi", x, self.weight())
        return y, _per_example(_spatial_size(x) * tf.reduce_sum(self.log_abs_s), x)

    def inverse_and_log_det(self, y):
        x = tf.einsum("bhwj,ij->bhwi", y, self.inverse_weight())
        return x, _per_example(-_spatial_size(y) * tf.reduce_sum(self.log_abs_s), y)


# ------------------------------------------------------------------------------------------- affine couplings

def coupling_network(in_channels: int, out_channels: int, n_filters: int, name: str) -> keras.Model:
    """The NN of a coupling: 3x3 conv (n_filters, ReLU), 1x1 conv (n_filters, ReLU), 3x3 conv to out_channels
    initialised to zero (so the coupling starts at a fixed, data-independent transform). Built for any h, w."""
    network = keras.Sequential([
        keras.layers.Conv2D(n_filters, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(n_filters, 1, padding="same", activation="relu"),
        keras.layers.Conv2D(out_channels, 3, padding="same", kernel_initializer="zeros",
                            bias_initializer="zeros"),
    ], name=name)
    network.build((None, None, None, in_channels))
    return network


def _log_scale(raw, scale_fn: str, multiplier):
    """log of the coupling's scale from the network's raw output: log sigmoid(raw + 2) (Glow) or
    multiplier * tanh(raw) (RealNVP's form, a learnable per-channel multiplier starting at 1)."""
    if scale_fn == "sigmoid":
        return tf.math.log_sigmoid(raw + 2.0)
    return multiplier * tf.tanh(raw)


def _check_scale_fn(scale_fn: str):
    if scale_fn not in SCALE_FUNCTIONS:
        raise ValueError(f"coupling scale must be one of {', '.join(SCALE_FUNCTIONS)}, got {scale_fn!r}")


class AffineCoupling(FlowBijector):
    """Glow's affine coupling: the first half of the channels x_a passes unchanged and conditions the second half,
    y_b = (x_b + shift(x_a)) * scale(x_a), with (shift, raw) = NN(x_a) and scale = sigmoid(raw + 2) (or
    exp(multiplier * tanh(raw)) with ``scale_fn='tanh'``). log-det = sum over (h, w, c/2) of log scale.
    """

    def __init__(self, channels: int, n_filters: int, scale_fn: str = "sigmoid", name: str = "affine_coupling"):
        super().__init__(name, dict(channels=channels, n_filters=n_filters, scale_fn=scale_fn, name=name))
        _check_scale_fn(scale_fn)
        if channels % 2:
            raise ValueError(f"an affine coupling needs an even number of channels, got {channels}")
        self.channels = int(channels)
        self.half = self.channels // 2
        self.scale_fn = scale_fn
        self.network = coupling_network(self.half, 2 * self.half, int(n_filters), name=f"{name}_nn")
        self.multiplier = tf.Variable(tf.ones([self.half]), name="multiplier") if scale_fn == "tanh" else None

    def _shift_and_log_scale(self, x_a):
        out = self.network(x_a)
        shift, raw = out[..., :self.half], out[..., self.half:]
        return shift, _log_scale(raw, self.scale_fn, self.multiplier)

    def forward_and_log_det(self, x):
        x_a, x_b = x[..., :self.half], x[..., self.half:]
        shift, log_scale = self._shift_and_log_scale(x_a)
        y_b = (x_b + shift) * tf.exp(log_scale)
        return tf.concat([x_a, y_b], axis=-1), tf.reduce_sum(log_scale, axis=[1, 2, 3])

    def inverse_and_log_det(self, y):
        y_a, y_b = y[..., :self.half], y[..., self.half:]
        shift, log_scale = self._shift_and_log_scale(y_a)
        x_b = y_b * tf.exp(-log_scale) - shift
        return tf.concat([y_a, x_b], axis=-1), -tf.reduce_sum(log_scale, axis=[1, 2, 3])


class MaskedAffineCoupling(FlowBijector):
    """RealNVP's masked affine coupling: y = b x + (1 - b) (x exp(log_s(b x)) + t(b x)), with b a binary mask
    (1 = conditioning entries, passed unchanged): ``mask='checkerboard'`` (b = 1 where (i + j) % 2 == parity, on
    every channel) or ``mask='channel'`` (b = 1 on the first half of the channels for parity 0, on the second
    half for parity 1). (t, raw) = NN(b x) with 2c outputs; log_s from raw as in :class:`AffineCoupling`
    (default tanh with a learnable multiplier, RealNVP's form). log-det = sum of (1 - b) log_s.
    """

    def __init__(self, channels: int, n_filters: int, mask: str = "checkerboard", parity: int = 0,
                 scale_fn: str = "tanh", name: str = "masked_affine_coupling"):
        super().__init__(name, dict(channels=channels, n_filters=n_filters, mask=mask, parity=parity,
                                    scale_fn=scale_fn, name=name))
        _check_scale_fn(scale_fn)
        if mask not in ("checkerboard", "channel"):
            raise ValueError(f"mask must be 'checkerboard' or 'channel', got {mask!r}")
        if mask == "channel" and channels % 2:
            raise ValueError(f"a channel-wise mask needs an even number of channels, got {channels}")
        self.channels = int(channels)
        self.mask_type = mask
        self.parity = int(parity) % 2
        self.scale_fn = scale_fn
        self.network = coupling_network(self.channels, 2 * self.channels, int(n_filters), name=f"{name}_nn")
        self.multiplier = (tf.Variable(tf.ones([self.channels]), name="multiplier") if scale_fn == "tanh"
                           else None)

    def mask(self, x):
        """b, broadcastable to x: (1, h, w, 1) for a checkerboard, (1, 1, 1, c) channel-wise; 1 = conditioning."""
        if self.mask_type == "checkerboard":
            shape = tf.shape(x)
            rows = tf.range(shape[1])[:, None]
            cols = tf.range(shape[2])[None, :]
            board = tf.cast(tf.equal((rows + cols) % 2, self.parity), x.dtype)
            return board[None, :, :, None]
        first = np.arange(self.channels) < self.channels // 2
        keep = first if self.parity == 0 else ~first
        return tf.constant(keep.astype(np.float32).reshape(1, 1, 1, -1), dtype=x.dtype)

    def _shift_and_log_scale(self, conditioning, mask):
        out = self.network(conditioning)
        shift, raw = out[..., :self.channels], out[..., self.channels:]
        free = 1.0 - mask
        return free * shift, free * _log_scale(raw, self.scale_fn, self.multiplier)

    def forward_and_log_det(self, x):
        mask = self.mask(x)
        shift, log_scale = self._shift_and_log_scale(mask * x, mask)
        y = mask * x + (1.0 - mask) * (x * tf.exp(log_scale) + shift)
        return y, tf.reduce_sum(log_scale, axis=[1, 2, 3])

    def inverse_and_log_det(self, y):
        mask = self.mask(y)
        shift, log_scale = self._shift_and_log_scale(mask * y, mask)
        x = mask * y + (1.0 - mask) * ((y - shift) * tf.exp(-log_scale))
        return x, -tf.reduce_sum(log_scale, axis=[1, 2, 3])


# ---------------------------------------------------------------------------------------------------- squeeze

def _check_even(shape, what: str):
    height, width = shape[1], shape[2]
    if (height is not None and height % 2) or (width is not None and width % 2):
        raise ValueError(f"Squeeze needs an even height and width, got {height}x{width} ({what}); "
                         f"choose fewer levels L or crop/pad the input so its size divides by 2**L")


class Squeeze(FlowBijector):
    """2x2 squeeze (h, w, c) -> (h/2, w/2, 4c) (space-to-depth; channel order: block row, block column, c).
    log-det 0. Odd height or width: ValueError."""

    def __init__(self, name: str = "squeeze"):
        super().__init__(name, dict(name=name))

    def forward_and_log_det(self, x):
        _check_even(x.shape, "input of a squeeze")
        return tf.nn.space_to_depth(x, 2), tf.zeros([_batch_size(x)], x.dtype)

    def inverse_and_log_det(self, y):
        return tf.nn.depth_to_space(y, 2), tf.zeros([_batch_size(y)], y.dtype)

    def _forward_event_shape(self, input_shape):
        h, w, c = input_shape
        return tf.TensorShape([h // 2 if h is not None else None, w // 2 if w is not None else None,
                               4 * c if c is not None else None])

    def _forward_event_shape_tensor(self, input_shape):
        return tf.stack([input_shape[0] // 2, input_shape[1] // 2, 4 * input_shape[2]])

    def _inverse_event_shape(self, output_shape):
        h, w, c = output_shape
        return tf.TensorShape([2 * h if h is not None else None, 2 * w if w is not None else None,
                               c // 4 if c is not None else None])

    def _inverse_event_shape_tensor(self, output_shape):
        return tf.stack([2 * output_shape[0], 2 * output_shape[1], output_shape[2] // 4])


# ---------------------------------------------------------------------------------- priors of the latents

class ConditionalGaussianSplit(FlowBijector):
    """The multi-scale split as a bijector: x = [x_keep, x_out] (channel halves) -> y = [x_keep, eps] with
    eps = (x_out - mean(x_keep)) * exp(-log_std(x_keep)), (mean, log_std) from a zero-initialised 3x3 conv of
    x_keep. Under the flow's standard-normal base, the factored-out x_out then has the conditional Gaussian prior
    N(mean, exp(log_std)^2). log-det = -sum over (h, w, c/2) of log_std.
    """

    def __init__(self, channels: int, name: str = "split_prior"):
        super().__init__(name, dict(channels=channels, name=name))
        if channels % 2:
            raise ValueError(f"a split needs an even number of channels, got {channels}")
        self.channels = int(channels)
        self.half = self.channels // 2
        self.conv = keras.layers.Conv2D(2 * self.half, 3, padding="same", kernel_initializer="zeros",
                                        bias_initializer="zeros", name=f"{name}_conv")
        self.conv.build((None, None, None, self.half))

    def mean_and_log_std(self, kept):
        out = self.conv(kept)
        return out[..., :self.half], out[..., self.half:]

    def forward_and_log_det(self, x):
        kept, out = x[..., :self.half], x[..., self.half:]
        mean, log_std = self.mean_and_log_std(kept)
        eps = (out - mean) * tf.exp(-log_std)
        return tf.concat([kept, eps], axis=-1), -tf.reduce_sum(log_std, axis=[1, 2, 3])

    def inverse_and_log_det(self, y):
        kept, eps = y[..., :self.half], y[..., self.half:]
        mean, log_std = self.mean_and_log_std(kept)
        out = mean + eps * tf.exp(log_std)
        return tf.concat([kept, out], axis=-1), tf.reduce_sum(log_std, axis=[1, 2, 3])


class LearnedGaussianPrior(FlowBijector):
    """Glow's ``learntop``: the top latent z has the prior N(mean, exp(log_std)^2) with mean and log_std learned
    per (h, w, c), initialised to zero (standard normal). As a bijector: z -> eps = (z - mean) exp(-log_std),
    log-det = -sum log_std."""

    def __init__(self, event_shape, name: str = "top_prior"):
        super().__init__(name, dict(event_shape=tuple(event_shape), name=name))
        self.event_shape_ = tuple(int(n) for n in event_shape)
        self.mean = tf.Variable(tf.zeros(self.event_shape_), name="mean")
        self.log_std = tf.Variable(tf.zeros(self.event_shape_), name="log_std")

    def forward_and_log_det(self, x):
        return (x - self.mean) * tf.exp(-self.log_std), _per_example(-tf.reduce_sum(self.log_std), x)

    def inverse_and_log_det(self, y):
        return self.mean + y * tf.exp(self.log_std), _per_example(tf.reduce_sum(self.log_std), y)
