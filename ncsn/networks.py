"""Score networks of NCSN v1 and v2 (a RefineNet with dilated convolutions), and an EMA of their weights.

Shapes: images and spectrograms are NHWC float32 ``(batch, height, width, channels)`` in [0, 1] ([0,1]-scaled dB
mel spectrograms are ``(batch, 96, 64, 1)``); noise levels are given by their index ``labels`` into the schedule,
``(batch,)`` int32, 0 = the largest sigma. Every model made by :func:`build_score_network` is called the same way,
``model([x, labels], training=...)``, and returns the estimated score d log p_sigma(x) / dx, shape of ``x``, in
1 / data units.

Architecture (docs/algorithms.md §4, written from the NCSN paper's description, Song & Ermon 2019, appendix B):

* input mapped to [-1, 1] (x -> 2x - 1), a 3x3 convolution to ``ngf`` channels;
* four stages of two pre-activation residual blocks (norm, ELU, 3x3 conv, norm, ELU, 3x3 conv, plus a shortcut),
  with ngf, 2ngf, 2ngf, 2ngf channels; stage 2 halves the resolution (2x2 average pooling, 'same' padding, so odd
  sizes round up: 28 -> 14, 7 -> 4); stages 3 and 4 keep it and use dilation 2 and 4 instead;
* four RefineNet blocks (Lin et al. 2017) going back up: on each input path two residual conv units, multi-resolution
  fusion (norm, 3x3 conv, bilinear resize to the finer path's size, sum), chained residual pooling (two stages of
  norm, 5x5 average pooling with stride 1, 3x3 conv, added back), an output residual conv unit (three in the last
  block);
* a final norm, ELU and 3x3 convolution to the input's channels.

v1 ("CondRefineNetDilated"): every normalisation is conditional instance norm++ on the noise level's index.
v2 (NCSNv2, technique 3): the same network with unconditional instance norm++, and the output divided by
sigma = sigmas[labels] (the model keeps the schedule as a constant), so the callers never branch on the version.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional, Sequence

import numpy as np

from core import import_tensorflow

tf = import_tensorflow()
import tf_keras as keras  # noqa: E402  (after TensorFlow, quietly imported)

NORM_EPSILON = 1e-5


#: Config keys a trained score network's checkpoint is bound to (its architecture and noise schedule).
ARCHITECTURE_KEYS = ("version", "n_filters", "num_classes", "sigma1", "sigmaL", "progression", "height", "width")


# --------------------------------------------------------------------------------------------- normalisation

def _instance_statistics(x, epsilon: float):
    """Instance-norm pieces of x (batch, h, w, c).

    Returns:
        normalised: (x_k - mu_k) / s_k, shape of x, with mu_k, s_k the spatial mean and std of channel k
            (population variance + epsilon);
        mean_term: (mu_k - m) / v, shape (batch, 1, 1, c), with m, v the mean and std of the mu_k over channels
            (population variance + epsilon).
    """
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    centred = x - mean
    normalised = centred * tf.math.rsqrt(tf.reduce_mean(tf.square(centred), axis=[1, 2], keepdims=True) + epsilon)
    means_centred = mean - tf.reduce_mean(mean, axis=3, keepdims=True)
    mean_term = means_centred * tf.math.rsqrt(tf.reduce_mean(tf.square(means_centred), axis=3, keepdims=True)
                                              + epsilon)
    return normalised, mean_term


def _scale_initializer():
    """gamma and alpha start near 1 (N(1, 0.02)), so that classes differ slightly from the first step."""
    return keras.initializers.RandomNormal(mean=1.0, stddev=0.02)


class ConditionalInstanceNorm2dPlus(keras.layers.Layer):
    """Conditional instance normalisation++ (NCSN): per noise class i and channel k,

    z_k = gamma_{i,k} (x_k - mu_k) / s_k + beta_{i,k} + alpha_{i,k} (mu_k - m) / v

    where mu_k, s_k are channel k's spatial mean and std and m, v the mean and std of the mu_k over the channels.
    The alpha term gives back the information on the channels' relative means that instance norm removes.

    Call: ``layer(x, labels)`` with x (batch, h, w, c) float32 and labels (batch,) int class indices in
    [0, num_classes); returns (batch, h, w, c) float32.
    Weights: gamma, alpha (num_classes, c) initialised N(1, 0.02); beta (num_classes, c) zeros.
    """

    def __init__(self, num_classes: int, epsilon: float = NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        shape = (self.num_classes, channels)
        self.gamma = self.add_weight(name="gamma", shape=shape, initializer=_scale_initializer())
        self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros")
        self.alpha = self.add_weight(name="alpha", shape=shape, initializer=_scale_initializer())
        super().build(input_shape)

    def call(self, x, labels):
        normalised, mean_term = _instance_statistics(x, self.epsilon)
        labels = tf.cast(labels, tf.int32)
        shape = [-1, 1, 1, self.gamma.shape[1]]  # (batch, 1, 1, c): one row of each table per example
        gamma, beta, alpha = (tf.reshape(tf.gather(table, labels), shape)
                              for table in (self.gamma, self.beta, self.alpha))
        return gamma * normalised + beta + alpha * mean_term

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "epsilon": self.epsilon}


class InstanceNorm2dPlus(keras.layers.Layer):
    """Instance normalisation++ without classes (NCSNv2):
    z_k = gamma_k (x_k - mu_k) / s_k + beta_k + alpha_k (mu_k - m) / v.

    Call: ``layer(x, labels=None)`` (labels are accepted and ignored, so that both norms are interchangeable);
    x (batch, h, w, c) float32 -> (batch, h, w, c) float32.
    """

    def __init__(self, epsilon: float = NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer=_scale_initializer())
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
        self.alpha = self.add_weight(name="alpha", shape=(channels,), initializer=_scale_initializer())
        super().build(input_shape)

    def call(self, x, labels=None):
        normalised, mean_term = _instance_statistics(x, self.epsilon)
        return self.gamma * normalised + self.beta + self.alpha * mean_term

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


NormFactory = Callable[[str], keras.layers.Layer]


def _conv(filters: int, kernel: int = 3, dilation: int = 1, name: Optional[str] = None):
    return keras.layers.Conv2D(filters, kernel, padding="same", dilation_rate=dilation, name=name)


def _downsample(x):
    """2x2 average pooling, 'same' padding (odd sizes round up; padded cells are not averaged in)."""
    return tf.nn.avg_pool2d(x, ksize=2, strides=2, padding="SAME")


def _resize_to(x, reference):
    """Bilinear resize of x (batch, h, w, c) to reference's (h, w); a no-op when the sizes already match."""
    static_source, static_target = x.shape[1:3], reference.shape[1:3]
    if static_source.is_fully_defined() and static_target.is_fully_defined():
        if tuple(static_source) == tuple(static_target):
            return x
        size = tuple(static_target)
    else:
        size = tf.shape(reference)[1:3]
    return tf.image.resize(x, size, method="bilinear")


# ------------------------------------------------------------------------------------------------ building blocks

class ResidualBlock(keras.layers.Layer):
    """Pre-activation residual block: norm, ELU, 3x3 conv (in -> in), norm, ELU, 3x3 conv (in -> out), plus the
    input (through a 1x1 conv when the channels change or the block downsamples).

    Args:
        in_channels, out_channels: channels of the input and output.
        norm: factory ``norm(name)`` of a normalisation layer called as ``layer(x, labels)``.
        downsample: halve height and width (2x2 average pooling after the convolutions and on the shortcut).
        dilation: dilation rate of both 3x3 convolutions.
    Call: ``block(x, labels)``: (batch, h, w, in) -> (batch, h', w', out), h' = ceil(h / 2) when downsampling.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: NormFactory, downsample: bool = False,
                 dilation: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.downsample = downsample
        self.norm1 = norm("norm1")
        self.conv1 = _conv(in_channels, dilation=dilation, name="conv1")
        self.norm2 = norm("norm2")
        self.conv2 = _conv(out_channels, dilation=dilation, name="conv2")
        self.shortcut = (_conv(out_channels, kernel=1, name="shortcut")
                         if downsample or in_channels != out_channels else None)

    def call(self, x, labels):
        h = self.conv1(tf.nn.elu(self.norm1(x, labels)))
        h = self.conv2(tf.nn.elu(self.norm2(h, labels)))
        skip = x if self.shortcut is None else self.shortcut(x)
        if self.downsample:
            h, skip = _downsample(h), _downsample(skip)
        return skip + h


class _NormConvStages(keras.layers.Layer):
    """``n_stages`` pairs of a conditional norm and a 3x3 conv to ``channels`` (``self.norms[i]``, ``self.convs[i]``,
    named ``norm<i>`` / ``conv<i>``), the parts of RefineNet's blocks below."""

    def __init__(self, channels: int, norm: NormFactory, n_stages: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.norms = [norm(f"norm{i}") for i in range(n_stages)]
        self.convs = [_conv(channels, name=f"conv{i}") for i in range(n_stages)]


class ResidualConvUnit(_NormConvStages):
    """RefineNet's residual conv unit: x + (norm, ELU, 3x3 conv) x n_stages; channels unchanged.

    Call: ``unit(x, labels)``: (batch, h, w, c) -> (batch, h, w, c).
    """

    def call(self, x, labels):
        h = x
        for norm, conv in zip(self.norms, self.convs):
            h = conv(tf.nn.elu(norm(h, labels)))
        return x + h


class MultiResolutionFusion(_NormConvStages):
    """RefineNet's fusion: each path through norm and a 3x3 conv to ``out_channels``, resized (bilinear) to the first
    path's height and width, and summed.

    Call: ``fusion(paths, labels)`` with paths a list of (batch, h_j, w_j, c_j); returns (batch, h_0, w_0, out).
    """

    def __init__(self, n_paths: int, out_channels: int, norm: NormFactory, **kwargs):
        super().__init__(out_channels, norm, n_paths, **kwargs)

    def call(self, paths, labels):
        total = None
        for path, norm, conv in zip(paths, self.norms, self.convs):
            h = _resize_to(conv(norm(path, labels)), paths[0])
            total = h if total is None else total + h
        return total


class ChainedResidualPooling(_NormConvStages):
    """RefineNet's chained residual pooling: x = ELU(x); then n_stages times
    path = conv3x3(avg_pool5x5_stride1(norm(path))), x = x + path.

    Call: ``pooling(x, labels)``: (batch, h, w, c) -> (batch, h, w, c).
    """

    def call(self, x, labels):
        x = tf.nn.elu(x)
        path = x
        for norm, conv in zip(self.norms, self.convs):
            path = conv(tf.nn.avg_pool2d(norm(path, labels), ksize=5, strides=1, padding="SAME"))
            x = x + path
        return x


class RefineBlock(keras.layers.Layer):
    """One RefineNet block: two residual conv units per input path, fusion, chained residual pooling, output unit(s).

    Args:
        in_channels: channels of each input path (the first is the finer, encoder path; its size is the output's).
        out_channels: output channels.
        norm: normalisation factory.
        last: the network's last block (three output residual conv units instead of one).
    Call: ``block(paths, labels)``: list of (batch, h_j, w_j, c_j) -> (batch, h_0, w_0, out_channels).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, norm: NormFactory, last: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.adapters = [[ResidualConvUnit(c, norm, name=f"path{j}_rcu{k}") for k in range(2)]
                         for j, c in enumerate(in_channels)]
        needs_fusion = len(in_channels) > 1 or in_channels[0] != out_channels
        self.fusion = MultiResolutionFusion(len(in_channels), out_channels, norm, name="fusion") \
            if needs_fusion else None
        self.pooling = ChainedResidualPooling(out_channels, norm, name="pooling")
        self.output_units = [ResidualConvUnit(out_channels, norm, name=f"out_rcu{k}") for k in range(3 if last else 1)]

    def call(self, paths, labels):
        adapted = []
        for path, units in zip(paths, self.adapters):
            for unit in units:
                path = unit(path, labels)
            adapted.append(path)
        h = self.fusion(adapted, labels) if self.fusion is not None else adapted[0]
        h = self.pooling(h, labels)
        for unit in self.output_units:
            h = unit(h, labels)
        return h


# ------------------------------------------------------------------------------------------------------ the model

class RefineNetDilated(keras.Model):
    """The NCSN score network (v1: "CondRefineNetDilated"; v2: unconditional norms and output / sigma).

    Args:
        n_filters: ngf, the channels of the first stage (the seed: 192 for v1, 128 for v2).
        channels: channels of the data (1 for spectrograms, 1 or 3 for images).
        num_classes: number of noise levels L (size of the conditional norms' tables).
        conditional: True (v1): conditional instance norm++ on the level index; False: instance norm++ without
            class (v2).
        sigmas: (L,) the schedule; if given (v2), the output is divided by sigmas[labels]. Kept as a constant
            (not a weight, not in checkpoints).
    Call: ``model([x, labels], training=None)``: x (batch, h, w, channels) float32 in [0, 1], labels (batch,) int
    level indices -> (batch, h, w, channels) float32 score. Any h, w >= 1 work (odd sizes included).
    """

    def __init__(self, n_filters: int, channels: int, num_classes: int, conditional: bool = True,
                 sigmas: Optional[np.ndarray] = None, **kwargs):
        kwargs.setdefault("name", "ncsn_v1" if conditional else "ncsn_v2")
        super().__init__(**kwargs)
        self.n_filters, self.channels, self.num_classes = int(n_filters), int(channels), int(num_classes)
        self.conditional = bool(conditional)
        self.sigmas = None if sigmas is None else tf.constant(np.asarray(sigmas, dtype=np.float32))
        if self.sigmas is not None and int(self.sigmas.shape[0]) != self.num_classes:
            raise ValueError(f"{self.sigmas.shape[0]} sigmas for {self.num_classes} classes")

        def norm(name):
            return ConditionalInstanceNorm2dPlus(self.num_classes, name=name) if self.conditional \
                else InstanceNorm2dPlus(name=name)

        ngf = self.n_filters
        self.begin_conv = _conv(ngf, name="begin_conv")
        self.stages = [
            [ResidualBlock(ngf, ngf, norm, name="stage1_block0"), ResidualBlock(ngf, ngf, norm, name="stage1_block1")],
            [ResidualBlock(ngf, 2 * ngf, norm, downsample=True, name="stage2_block0"),
             ResidualBlock(2 * ngf, 2 * ngf, norm, name="stage2_block1")],
            [ResidualBlock(2 * ngf, 2 * ngf, norm, dilation=2, name="stage3_block0"),
             ResidualBlock(2 * ngf, 2 * ngf, norm, dilation=2, name="stage3_block1")],
            [ResidualBlock(2 * ngf, 2 * ngf, norm, dilation=4, name="stage4_block0"),
             ResidualBlock(2 * ngf, 2 * ngf, norm, dilation=4, name="stage4_block1")],
        ]
        self.refine_blocks = [
            RefineBlock([2 * ngf], 2 * ngf, norm, name="refine1"),
            RefineBlock([2 * ngf, 2 * ngf], 2 * ngf, norm, name="refine2"),
            RefineBlock([2 * ngf, 2 * ngf], ngf, norm, name="refine3"),
            RefineBlock([ngf, ngf], ngf, norm, last=True, name="refine4"),
        ]
        self.end_norm = norm("end_norm")
        self.end_conv = _conv(self.channels, name="end_conv")

    def call(self, inputs, training=None):
        x, labels = inputs
        labels = tf.cast(labels, tf.int32)
        h = self.begin_conv(2.0 * x - 1.0)
        features = []
        for stage in self.stages:
            for block in stage:
                h = block(h, labels)
            features.append(h)
        h = self.refine_blocks[0]([features[3]], labels)
        h = self.refine_blocks[1]([features[2], h], labels)
        h = self.refine_blocks[2]([features[1], h], labels)
        h = self.refine_blocks[3]([features[0], h], labels)
        score = self.end_conv(tf.nn.elu(self.end_norm(h, labels)))
        if self.sigmas is not None:
            score = score / tf.gather(self.sigmas, labels)[:, tf.newaxis, tf.newaxis, tf.newaxis]
        return score


def build_score_network(config, input_shape: Sequence[int]) -> RefineNetDilated:
    """The score network a config describes, built (weights created) for inputs of ``input_shape``.

    Args:
        config: a :class:`core.config.Config` (uses version, n_filters, num_classes, and for v2 sigma1, sigmaL,
            progression).
        input_shape: (height, width, channels) of one example, e.g. (96, 64, 1).
    Returns:
        a keras.Model called as ``model([x, labels], training=...)`` -> score, for both versions (v2 looks up
        sigma = sigmas[labels] itself).
    Raises:
        ValueError: n_filters missing or an unknown version.
    """
    from ncsn.schedule import sigmas_from_config

    if config.n_filters is None or config.n_filters < 1:
        raise ValueError(f"the score network needs n_filters >= 1, got {config.n_filters}")
    height, width, channels = (int(v) for v in input_shape)
    if config.version == "v1":
        model = RefineNetDilated(config.n_filters, channels, config.num_classes, conditional=True)
    elif config.version == "v2":
        model = RefineNetDilated(config.n_filters, channels, config.num_classes, conditional=False,
                                 sigmas=sigmas_from_config(config))
    else:
        raise ValueError(f"unknown NCSN version {config.version!r} (v1 or v2)")
    model([tf.zeros((1, height, width, channels)), tf.zeros((1,), tf.int32)])
    return model


# ------------------------------------------------------------------------------------------------ parameter count

def count_parameters(model) -> int:
    """Number of trainable scalars of a (built) model."""
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def parameter_summary(model, print_fn: Optional[Callable[[str], None]] = None) -> str:
    """A table of trainable parameters per top-level block of a built :class:`RefineNetDilated` and the total.

    Args:
        model: a built model.
        print_fn: if given (e.g. ``print`` or ``logger.info``), called with the table.
    Returns:
        the table as text (one line per block, then ``total``).
    """
    rows = []
    for layer in model.layers:
        blocks = layer if isinstance(layer, (list, tuple)) else [layer]
        for block in blocks:
            rows.append((block.name, int(sum(np.prod(v.shape) for v in block.trainable_variables))))
    rows.append(("total", count_parameters(model)))
    width = max(len(name) for name, _ in rows)
    text = "\n".join(f"{name:<{width}}  {count:>12,}" for name, count in rows)
    if print_fn is not None:
        print_fn(text)
    return text


# ----------------------------------------------------------------------------------------------------------- EMA

class EMAWeights(tf.Module):
    """Exponential moving average of a model's trainable weights (NCSNv2 technique 5).

    After each optimiser step, :meth:`update` sets shadow <- rate * shadow + (1 - rate) * weight. The shadow copies
    are non-trainable tf.Variables tracked by tf.train.Checkpoint (``tf.train.Checkpoint(ema=ema)``; the model is
    not tracked through this object). Under a tf.distribute strategy create it inside ``strategy.scope()``; the
    shadows use ONLY_FIRST_REPLICA aggregation, so :meth:`update` may run in replica context.

    Usage::

        ema = EMAWeights(model, rate=config.ema_rate)
        ... train step ...; ema.update()
        with ema.swapped():      # the averaged weights are in the model inside the block
            samples = sampler(...)
        ema.copy_to_model()      # or put them in for good

    Args:
        model: a built keras model (its ``trainable_variables`` exist).
        rate: the momentum, e.g. 0.999.
    """

    def __init__(self, model, rate: float = 0.999, name: str = "ema"):
        super().__init__(name=name)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"the EMA rate must be in [0, 1), got {rate}")
        variables = list(model.trainable_variables)
        if not variables:
            raise ValueError("the model has no weights yet: build it (call it once) before making its EMA")
        self.rate = float(rate)
        self._model_variables = lambda: model.trainable_variables  # a closure: not tracked as a dependency
        with tf.init_scope():
            self.shadow = [tf.Variable(v.read_value(), trainable=False, name=v.name.split(":")[0] + "_ema",
                                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                           for v in variables]

    def update(self) -> None:
        """shadow <- rate * shadow + (1 - rate) * weight, for every trainable weight (works in tf.function)."""
        for shadow, variable in zip(self.shadow, self._model_variables()):
            shadow.assign_sub((1.0 - self.rate) * (shadow - tf.cast(variable, shadow.dtype)))

    def reset(self) -> None:
        """Set the averages to the model's current weights (e.g. after loading weights to fine-tune from)."""
        for shadow, variable in zip(self.shadow, self._model_variables()):
            shadow.assign(tf.cast(variable, shadow.dtype))

    def copy_to_model(self) -> None:
        """Overwrite the model's weights with the averages (e.g. before sampling from a restored checkpoint)."""
        for shadow, variable in zip(self.shadow, self._model_variables()):
            variable.assign(shadow)

    @contextlib.contextmanager
    def swapped(self):
        """Context manager: the averaged weights in the model inside the block; the raw ones restored exactly after."""
        variables = self._model_variables()
        backup = [tf.identity(v.read_value()) for v in variables]
        for shadow, variable in zip(self.shadow, variables):
            variable.assign(shadow)
        try:
            yield self
        finally:
            for saved, variable in zip(backup, variables):
                variable.assign(saved)
