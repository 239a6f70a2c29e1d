"""Glow and RealNVP: multi-scale flows composed of the bijectors of :mod:`flow_models.bijectors`.

Data: NHWC float32 ``(batch, height, width, channels)``; the training code feeds [0,1]-scaled spectrograms or images
shifted to [-0.5, 0.5]. Densities are in nats (``log_prob``) or bits per dimension (``bits_per_dim``).

Multi-scale scheme (docs/algorithms.md §3), L levels; level l (1-based):

* squeeze 2x2, (h, w, c) -> (h/2, w/2, 4c);
* K steps of flow;
* for l < L: :class:`~flow_models.bijectors.ConditionalGaussianSplit`, and the second half of the channels is
  factored out as latent z_l (standardised: standard normal under the model);
* for l = L: the whole tensor is the top latent z_L, standardised by :class:`LearnedGaussianPrior` when
  ``learntop``.

So height and width must be divisible by 2**L (96x64 with L=3: 12x8 at the top; 28x28 with L=2: 7x7).
A Glow step is ActNorm -> invertible 1x1 conv -> affine coupling. A RealNVP step (Dinh et al. 2017, adapted to the
same squeeze/split scheme) is ActNorm -> checkerboard masked coupling -> ActNorm -> channel-wise masked coupling,
with the masks' parity alternating from step to step; ActNorm replaces RealNVP's batch normalisation and the
coupling network is the 3-conv network of Glow instead of RealNVP's ResNet.

The latents returned by ``forward`` are all standardised (every prior folded into the bijectors), so
log p(x) = sum_l log N(z_l; 0, I) + log|det dz/dx|, and sampling at temperature T is ``inverse`` of T * N(0, I)
(T = 0 gives the latent mode, mapped to data space).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from core import import_tensorflow
from core.errors import UserError
from flow_models.bijectors import (ActNorm, AffineCoupling, ConditionalGaussianSplit, InvertibleConv1x1,
                                   LearnedGaussianPrior, MaskedAffineCoupling, Squeeze)
from flow_models.flowpp import flowpp_step

tf = import_tensorflow()

LOG_2PI = math.log(2.0 * math.pi)


def level_shapes(input_shape: Sequence[int], L: int) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """Per level, (shape inside the level after its squeeze, shape of its factored-out latent), (h, w, c) each.

    Raises ValueError when a squeeze meets an odd height or width."""
    height, width, channels = (int(n) for n in input_shape)
    if L < 1:
        raise ValueError(f"a flow needs at least one level, got L={L}")
    shapes = []
    for level in range(L):
        if height % 2 or width % 2:
            raise ValueError(f"input {tuple(input_shape)} cannot be squeezed {L} times: before level {level + 1} "
                             f"the size is {height}x{width}, which is odd; use L <= {level} or crop/pad the input "
                             f"to a multiple of 2**L")
        height, width, channels = height // 2, width // 2, 4 * channels
        last = level == L - 1
        latent = (height, width, channels if last else channels // 2)
        shapes.append(((height, width, channels), latent))
        if not last:
            channels //= 2
    return shapes


class MultiScaleFlow(tf.Module):
    """A flow of levels of bijectors with factored-out latents; the common part of :class:`Glow` and
    :class:`RealNVP`.

    Args:
        input_shape: (h, w, c) of one example.
        levels: per level, its bijectors in data -> latent order. Every level but the last must end with a
            :class:`ConditionalGaussianSplit` (its output's second channel half is factored out).
        latent_shapes: (h, w, c) of each level's latent z_l.
    """

    def __init__(self, input_shape, levels: Sequence[Sequence], latent_shapes: Sequence[Sequence[int]],
                 name: Optional[str] = None):
        super().__init__(name=name)
        self.input_shape = tuple(int(n) for n in input_shape)
        self.levels = [list(level) for level in levels]
        self.latent_shapes = [tuple(int(n) for n in shape) for shape in latent_shapes]
        self.dimensions = int(np.prod(self.input_shape))
        for level in self.levels[:-1]:
            if not isinstance(level[-1], ConditionalGaussianSplit):
                raise ValueError("every level but the last must end with a ConditionalGaussianSplit")

    # ----------------------------------------------------------------------------------------- the two passes
    def forward(self, x):
        """Data -> latents.

        Args:
            x: (batch, h, w, c) float32.
        Returns:
            (z, logdet): z a list of L standardised latents, z[l] of shape (batch,) + latent_shapes[l];
            logdet (batch,) = log|det dz/dx| in nats (priors' standardisation included).
        """
        h = tf.convert_to_tensor(x, tf.float32)
        logdet = tf.zeros([tf.shape(h)[0]])
        latents = []
        for index, level in enumerate(self.levels):
            for bijector in level:
                h, step_logdet = bijector.forward_and_log_det(h)
                logdet += step_logdet
            if index < len(self.levels) - 1:
                half = h.shape[-1] // 2
                latents.append(h[..., half:])
                h = h[..., :half]
        latents.append(h)
        return latents, logdet

    def inverse(self, z):
        """Latents -> data: z a list of L tensors shaped as :meth:`forward` returns them; returns (batch, h, w, c)."""
        h = tf.convert_to_tensor(z[-1], tf.float32)
        for index in reversed(range(len(self.levels))):
            if index < len(self.levels) - 1:
                h = tf.concat([h, tf.convert_to_tensor(z[index], tf.float32)], axis=-1)
            for bijector in reversed(self.levels[index]):
                h, _ = bijector.inverse_and_log_det(h)
        return h

    # -------------------------------------------------------------------------------------------- densities
    def log_prob(self, x):
        """log p(x) (batch,) in nats per example (a density over the continuous data space)."""
        latents, logdet = self.forward(x)
        log_base = tf.add_n([-0.5 * tf.reduce_sum(tf.square(z) + LOG_2PI, axis=[1, 2, 3]) for z in latents])
        return log_base + logdet

    def bits_per_dim(self, x, n_bins: Optional[int] = None):
        """-log p(x) / (D ln 2), (batch,), D = h * w * c.

        n_bins: for data quantised to n_bins levels (8-bit images: 256) and dequantised to bins of width
            1 / n_bins (data range 1), adds log2(n_bins) per dimension: the discrete bits/dim of the papers
            (-log2 P(bin) ~= -log2 p(x) + D log2 n_bins).
        """
        bpd = -self.log_prob(x) / (self.dimensions * math.log(2.0))
        return bpd + (math.log2(n_bins) if n_bins else 0.0)

    def sample(self, n: int, temperature: float = 1.0, seed: Optional[int] = None):
        """n samples (n, h, w, c) float32: ``inverse`` of temperature * N(0, I) latents (0: the latent mode)."""
        latents = []
        for index, shape in enumerate(self.latent_shapes):
            shape = (int(n),) + shape
            if seed is None:
                noise = tf.random.normal(shape)
            else:
                noise = tf.random.stateless_normal(shape, seed=[int(seed), index])
            latents.append(float(temperature) * noise)
        return self.inverse(latents)

    # ----------------------------------------------------------------------------------------- initialisation
    def initialize(self, x_batch):
        """Data-dependent initialisation of every ActNorm: each one is set from its input on ``x_batch``
        (batch, h, w, c), going through the flow in order. Returns the batch's log p(x) after initialisation."""
        h = tf.convert_to_tensor(x_batch, tf.float32)
        for index, level in enumerate(self.levels):
            for bijector in level:
                if isinstance(bijector, ActNorm):
                    bijector.initialize(h)
                h, _ = bijector.forward_and_log_det(h)
            if index < len(self.levels) - 1:
                h = h[..., :h.shape[-1] // 2]
        return self.log_prob(x_batch)

    # ---------------------------------------------------------------------------------------------- summary
    def summary(self) -> str:
        """Parameters per level and in total, one line each."""
        lines = [f"{type(self).__name__} input {self.input_shape}, {len(self.levels)} levels"]
        total = 0
        for index, (level, latent) in enumerate(zip(self.levels, self.latent_shapes)):
            count = sum(int(np.prod(v.shape)) for bijector in level for v in bijector.trainable_variables)
            total += count
            lines.append(f"  level {index + 1}: {len(level)} bijectors, {count:,} parameters, latent {latent}")
        lines.append(f"  total: {total:,} trainable parameters")
        return "\n".join(lines)


class Glow(MultiScaleFlow):
    """Glow (Kingma & Dhariwal 2018).

    Args:
        input_shape: (h, w, c), h and w divisible by 2**L.
        L: levels; K: steps of flow per level; n_filters: filters of the coupling networks.
        learntop: learned prior mean / log-std of the top latent (zero-initialised).
        coupling_scale: 'sigmoid' (scale = sigmoid(raw + 2)) or 'tanh' (scale = exp(m * tanh(raw))).
    """

    def __init__(self, input_shape, L: int, K: int, n_filters: int, learntop: bool = True,
                 coupling_scale: str = "sigmoid", name: str = "glow"):
        def step_layers(index, step, channels, prefix):
            return [ActNorm(channels, name=f"{prefix}_act_norm"),
                    InvertibleConv1x1(channels, seed=1000 * index + step, name=f"{prefix}_conv1x1"),
                    AffineCoupling(channels, n_filters, coupling_scale, name=f"{prefix}_coupling")]

        shapes = level_shapes(input_shape, L)
        super().__init__(input_shape, _multi_scale_levels(shapes, K, learntop, step_layers),
                         [latent for _, latent in shapes], name=name)


class RealNVP(MultiScaleFlow):
    """RealNVP (Dinh et al. 2017) on the squeeze/split scheme of Glow (see the module docstring).

    Args as :class:`Glow`; a step is ActNorm, checkerboard coupling, ActNorm, channel-wise coupling, with the
    masks' parity alternating between steps. coupling_scale defaults to RealNVP's 'tanh'.
    """

    def __init__(self, input_shape, L: int, K: int, n_filters: int, learntop: bool = True,
                 coupling_scale: str = "tanh", name: str = "realnvp"):
        def step_layers(index, step, channels, prefix):
            return [ActNorm(channels, name=f"{prefix}_act_norm_a"),
                    MaskedAffineCoupling(channels, n_filters, "checkerboard", step % 2, coupling_scale,
                                         name=f"{prefix}_checkerboard"),
                    ActNorm(channels, name=f"{prefix}_act_norm_b"),
                    MaskedAffineCoupling(channels, n_filters, "channel", step % 2, coupling_scale,
                                         name=f"{prefix}_channel")]

        shapes = level_shapes(input_shape, L)
        super().__init__(input_shape, _multi_scale_levels(shapes, K, learntop, step_layers),
                         [latent for _, latent in shapes], name=name)


class FlowPlusPlus(MultiScaleFlow):
    """Flow++ (Ho et al. 2019) on the squeeze/split scheme of Glow: a step is ActNorm, invertible 1x1 convolution
    and the logistic-mixture CDF coupling with its gated-convolution and self-attention network
    (:mod:`flow_models.flowpp`). Args as :class:`Glow`, plus ``n_components`` of the logistic mixtures;
    ``coupling_scale`` is not used (the coupling's own scale is a tanh-bounded log)."""

    def __init__(self, input_shape, L: int, K: int, n_filters: int, learntop: bool = True,
                 coupling_scale: str = "sigmoid", n_components: int = 4, name: str = "flowpp"):
        def step_layers(index, step, channels, prefix):
            return flowpp_step(index, step, channels, prefix, n_filters, n_components)

        shapes = level_shapes(input_shape, L)
        super().__init__(input_shape, _multi_scale_levels(shapes, K, learntop, step_layers),
                         [latent for _, latent in shapes], name=name)


def _multi_scale_levels(shapes, K: int, learntop: bool, step_layers) -> list[list]:
    """The layers of every level: squeeze, K steps of ``step_layers(index, step, channels, prefix)``, then the
    split (every level but the last) or the learned top prior (``learntop``, last level)."""
    levels = []
    for index, (inner, _) in enumerate(shapes):
        channels = inner[-1]
        level = [Squeeze(name=f"squeeze_{index}")]
        for step in range(K):
            level += step_layers(index, step, channels, f"level{index}_step{step}")
        if index < len(shapes) - 1:
            level.append(ConditionalGaussianSplit(channels, name=f"level{index}_split"))
        elif learntop:
            level.append(LearnedGaussianPrior(inner, name="top_prior"))
        levels.append(level)
    return levels


#: config keys that fix a flow's weights: a checkpoint only fits a model built with the same values
ARCHITECTURE_KEYS = ("flow", "L", "K", "n_filters", "learntop", "coupling_scale", "height", "width")


def level_folder(sigma: float) -> str:
    """The folder of one noise level of a noise-conditioned Glow (the seed's name): ``sigma_<round(sigma, 2)>``."""
    return f"sigma_{round(float(sigma), 2)}"


def build_flow(config, input_shape, kind: Optional[str] = None) -> MultiScaleFlow:
    """The flow a :class:`core.config.Config` describes (fields L, K, n_filters, learntop, coupling_scale).

    Args:
        config: the run's config; L, K and n_filters must be set.
        input_shape: (h, w, c) of one example, e.g. (96, 64, 1) for mel spectrograms.
        kind: 'glow', 'realnvp' or 'flowpp' (None: the config's ``flow``).
    Raises:
        UserError: a missing L / K / n_filters, an unknown kind, or an input size not divisible by 2**L.
    """
    kind = kind or getattr(config, "flow", "glow")
    missing = [key for key in ("L", "K", "n_filters") if getattr(config, key) is None]
    if missing:
        raise UserError(f"a {kind} needs the config keys {', '.join(missing)}")
    classes = {"glow": Glow, "realnvp": RealNVP, "flowpp": FlowPlusPlus}
    if kind not in classes:
        raise UserError(f"unknown flow kind {kind!r}; expected one of {', '.join(classes)}")
    try:
        return classes[kind](tuple(input_shape), config.L, config.K, config.n_filters, learntop=config.learntop,
                             coupling_scale=config.coupling_scale)
    except ValueError as error:
        raise UserError(str(error)) from None
