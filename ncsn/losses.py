"""Denoising score matching loss of NCSN (Song & Ermon 2019, eq. 5-6; docs/algorithms.md §4).

For each example x a noise level index i is drawn uniformly from {0, ..., L-1}, x~ = x + sigma_i z with
z ~ N(0, I), and the score network is asked for the score of the noised data, whose target is
-(x~ - x) / sigma_i^2 = -z / sigma_i. With the weight lambda(sigma) = sigma^2 the per-example loss is

    l(x) = 0.5 * || sigma_i * s(x~, i) + (x~ - x) / sigma_i ||^2 = 0.5 * || sigma_i * s(x~, i) + z ||^2,

the squared norm summed over all dimensions of one example (height x width x channels), as in the papers and the
seed (so its scale grows with the data dimension: the seed's validation loss on 96 x 64 spectrograms is ~350).
The batch loss is the mean of l over the examples.

Random numbers come either from a ``seed`` (a (2,) int tensor, stateless ops: the same seed gives the same levels
and noise) or from a ``tf.random.Generator`` (stateful; use one inside a training step so every step draws anew).
"""
from __future__ import annotations

from typing import Optional

from core import import_tensorflow

tf = import_tensorflow()


def _draw(shape, num_classes, seed=None, generator=None):
    """Level indices (batch,) int32 uniform in [0, num_classes) and noise z ~ N(0, I) of ``shape``."""
    if (seed is None) == (generator is None):
        raise ValueError("give exactly one of seed (stateless) or generator (tf.random.Generator)")
    if generator is not None:
        labels = generator.uniform([shape[0]], minval=0, maxval=num_classes, dtype=tf.int32)
        noise = generator.normal(shape)
        return labels, noise
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    labels = tf.random.stateless_uniform([shape[0]], seed=seeds[0], minval=0, maxval=num_classes, dtype=tf.int32)
    noise = tf.random.stateless_normal(shape, seed=seeds[1])
    return labels, noise


def per_example_dsm_loss(model, x, sigmas, seed=None, generator: Optional[tf.random.Generator] = None,
                         training: bool = True, labels=None):
    """Denoising score matching loss of every example of a batch.

    Args:
        model: score network called as ``model([x_noisy, labels], training=training)`` -> score, shape of x.
        x: (batch, h, w, c) float32 clean data ([0,1]-scaled).
        sigmas: (L,) float32 the noise schedule, descending (data units).
        seed: (2,) int seed for stateless random numbers, or
        generator: a tf.random.Generator (exactly one of the two).
        training: passed to the model.
        labels: optional (batch,) int32 level indices to use instead of uniformly drawn ones (e.g. a per-level
            test loss); the noise is still drawn.
    Returns:
        (batch,) float32: 0.5 * || sigma * s(x + sigma z, i) + z ||^2 summed over h, w, c, for each example
        (for the mean over the *global* batch under tf.distribute: ``tf.nn.compute_average_loss``).
    """
    x = tf.convert_to_tensor(x, tf.float32)
    sigmas = tf.convert_to_tensor(sigmas, tf.float32)
    drawn_labels, noise = _draw(tf.shape(x), tf.shape(sigmas)[0], seed=seed, generator=generator)
    labels = drawn_labels if labels is None else tf.cast(labels, tf.int32)
    sigma = tf.reshape(tf.gather(sigmas, labels), [-1] + [1] * (len(x.shape) - 1))
    noisy = x + sigma * noise
    score = model([noisy, labels], training=training)
    # (x~ - x) / sigma = z: the residual of the weighted target
    residual = sigma * score + noise
    return 0.5 * tf.reduce_sum(tf.square(residual), axis=list(range(1, len(x.shape))))


def dsm_loss(model, x, sigmas, seed=None, generator: Optional[tf.random.Generator] = None, training: bool = True,
             labels=None):
    """Mean over the batch of :func:`per_example_dsm_loss` (same arguments); a float32 scalar.

    Each example's loss is summed over its dimensions (h * w * c), as in the NCSN papers, not averaged.
    """
    return tf.reduce_mean(per_example_dsm_loss(model, x, sigmas, seed=seed, generator=generator,
                                               training=training, labels=labels))
