"""Annealed Langevin dynamics (Song & Ermon 2019, algorithm 1) as one compiled TensorFlow function.

For levels i = 1..L (sigma_1 > ... > sigma_L) and T steps per level, with eta_i = step_lr * (sigma_i / sigma_L)^2:

    x <- x + eta_i * g(x, i) + sqrt(2 eta_i) * z,      z ~ N(0, I)

where g is the *update direction*: the score s(x, sigma_i) for NCSN sampling, or score + likelihood term for BASIS
(posterior sampling, docs/algorithms.md §2), which reuses this core through its ``grad_fn``. Optionally a final denoising
step x <- x + sigma_L^2 g(x, L) (Tweedie's formula when g is the score) is applied at the end.

The loops over levels and steps run inside the graph (``tf.while_loop``), so a sampler is traced once for a given
state shape, whatever L and T. All random numbers are stateless and derived from one explicit seed
(a (2,) int tensor or a Python int): the same seed gives the same samples, bit for bit on the same machine.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np

from core import import_tensorflow
from core.errors import UserError
from ncsn.schedule import langevin_step_sizes

tf = import_tensorflow()

GradFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
Seed = Union[int, Sequence[int], np.ndarray, tf.Tensor]


def as_seed(seed: Seed) -> tf.Tensor:
    """A seed for stateless ops: a Python int n becomes [0, n]; a pair is kept. Returns (2,) int64."""
    if isinstance(seed, (int, np.integer)):
        return tf.constant([0, int(seed)], tf.int64)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if seed.shape.rank != 1 or seed.shape[0] != 2:
        raise ValueError(f"a seed is an int or a pair of ints, got shape {seed.shape}")
    return seed


def uniform_init(shape: Sequence[int], seed: Seed, dtype=tf.float32) -> tf.Tensor:
    """The default starting point of the chains: U(0, 1) of ``shape`` (data in [0, 1]), from a stateless seed."""
    return tf.random.stateless_uniform(shape, seed=as_seed(seed), dtype=dtype)


def langevin_steps(grad_fn: GradFn, x, level, first_step, n_steps, step, noise_scale, n_steps_each: int, seed,
                   first_nan=None, project: Optional[Callable[[tf.Tensor], tf.Tensor]] = None):
    """Steps ``first_step .. first_step + n_steps - 1`` of one noise level (the graph; the loop is a tf.while_loop).

    Args:
        grad_fn, n_steps_each, seed: as :func:`annealed_langevin` (seed already a (2,) tensor).
        x: the state; level, first_step, n_steps: int32 scalars (tensors, so that changing them does not retrace).
        step, noise_scale: eta_i and sqrt(2 eta_i) of the level, scalars of x's dtype.
        first_nan: if given, an int32 scalar carried along: the first step index ``level * T + t`` after which the
            state held a NaN or inf (-1 while none; one reduction per step).
        project: if given, applied to x after every step (e.g. BASIS's mixture-consistency correction).
    Returns:
        x after the steps, and first_nan when it was given. The noise of step t of level i is drawn from
        fold_in(seed, i * T + t), so running a level in several pieces gives the same numbers as in one.
    """
    shape = tf.shape(x)
    track = first_nan is not None
    first_step = tf.convert_to_tensor(first_step, tf.int32)

    def body(t, x, first_nan):
        index = level * n_steps_each + t
        step_seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(index, tf.int64))
        noise = tf.random.stateless_normal(shape, seed=step_seed, dtype=x.dtype)
        x = x + step * grad_fn(x, level) + noise_scale * noise
        if project is not None:
            x = project(x)
        if track:
            first_nan = _first_nan_after(x, index, first_nan)
        return t + 1, x, first_nan

    _, x, first_nan = tf.while_loop(lambda t, *_: t < first_step + n_steps, body,
                                    (first_step, x, first_nan if track else tf.constant(-1)))
    return (x, first_nan) if track else x


def _first_nan_after(x, index, first_nan):
    bad = tf.logical_and(first_nan < 0, tf.logical_not(tf.reduce_all(tf.math.is_finite(x))))
    return tf.where(bad, index, first_nan)


def annealed_langevin(grad_fn: GradFn, x_init, sigmas, n_steps_each: int, step_lr: float, seed: Seed,
                      denoise: bool = False, return_intermediates: bool = False, return_first_nan: bool = False):
    """Run annealed Langevin dynamics (the graph; call it eagerly or inside a tf.function).

    Args:
        grad_fn: ``grad_fn(x, level) -> direction`` with x the state (any shape, float) and level a scalar int32
            tensor in [0, L) (0 = sigma_1); returns a tensor of x's shape: the score for NCSN sampling, score plus
            likelihood gradient for BASIS. It is traced once (inside the loop), not once per level.
        x_init: the starting state, e.g. :func:`uniform_init` ((batch, h, w, c) for NCSN, (K, batch, h, w, c) for
            K sources in BASIS); its dtype is the dtype of the computation.
        sigmas: (L,) the noise schedule, descending (data units).
        n_steps_each: T, steps per level.
        step_lr: delta; the step at level i is eta_i = delta * (sigma_i / sigma_L)^2.
        seed: stateless seed; the noise of step t of level i is drawn from fold_in(seed, i * T + t).
        denoise: finish with x <- x + sigma_L^2 * grad_fn(x, L - 1).
        return_intermediates: also return the state at the end of each level.
        return_first_nan: also return, as an int32 scalar, the first step ``i * T + t`` after which the state held
            a NaN or inf (-1 if none; the final denoising step counts as ``L * T``). One reduction per step.
    Returns:
        x, the final state (shape and dtype of x_init), then, if asked, intermediates of shape (L, *x.shape) (the
        state after each level, before the final denoising step) and the first NaN step.
    """
    x_init = tf.convert_to_tensor(x_init)
    dtype = x_init.dtype
    sigmas_np = np.asarray(sigmas, dtype=np.float64)
    n_levels = int(sigmas_np.shape[0])
    steps = tf.constant(langevin_step_sizes(sigmas_np, step_lr), dtype)
    noise_scales = tf.sqrt(2.0 * steps)
    n_steps_each = int(n_steps_each)
    seed = as_seed(seed)

    def level_body(level, x, intermediates, first_nan):
        x, first_nan = langevin_steps(grad_fn, x, level, 0, n_steps_each, steps[level], noise_scales[level],
                                      n_steps_each, seed, first_nan)
        if return_intermediates:
            intermediates = intermediates.write(level, x)
        return level + 1, x, intermediates, first_nan

    intermediates = tf.TensorArray(dtype, size=n_levels, element_shape=x_init.shape)
    _, x, intermediates, first_nan = tf.while_loop(lambda level, *_: level < n_levels, level_body,
                                                   (tf.constant(0), x_init, intermediates, tf.constant(-1)))
    if denoise:
        x = x + float(sigmas_np[-1]) ** 2 * grad_fn(x, tf.constant(n_levels - 1))
        if return_first_nan:
            first_nan = _first_nan_after(x, tf.constant(n_levels * n_steps_each), first_nan)
    outputs = (x,) + ((intermediates.stack(),) if return_intermediates else ()) + \
        ((first_nan,) if return_first_nan else ())
    return outputs if len(outputs) > 1 else x


def describe_step(index: int, sigmas, n_steps_each: int) -> str:
    """Where step ``level * T + t`` of a schedule is, in words: 'noise level 3/10 (sigma 0.3594), step 12/100'."""
    level, step = divmod(int(index), int(n_steps_each))
    if level >= len(sigmas):
        return "in the final denoising step"
    return f"at noise level {level + 1}/{len(sigmas)} (sigma {float(sigmas[level]):.4g}), step {step + 1}/{n_steps_each}"


class SamplingDiverged(UserError):
    """The Langevin state became NaN or inf; the message names the noise level and step."""


class AnnealedLangevin:
    """A compiled annealed-Langevin sampler over a fixed update direction and schedule.

    Args:
        grad_fn, sigmas, n_steps_each, step_lr, denoise, return_intermediates: as :func:`annealed_langevin`.
        jit_compile: compile with XLA (tf.function(jit_compile=True)).
    Call: ``sampler(x_init, seed)`` -> x (or (x, intermediates)); ``sampler.sample(shape, seed)`` starts from
    U(0, 1). The function is traced once per state shape and dtype; seeds are tensors, so new seeds do not retrace.
    A NaN or inf in the state raises :class:`SamplingDiverged` naming the noise level and step where it appeared.
    """

    def __init__(self, grad_fn: GradFn, sigmas, n_steps_each: int, step_lr: float, denoise: bool = False,
                 return_intermediates: bool = False, jit_compile: bool = False):
        self.grad_fn = grad_fn
        self.sigmas = np.asarray(sigmas, dtype=np.float32)
        self.n_steps_each = int(n_steps_each)
        self.step_lr = float(step_lr)
        self.denoise = bool(denoise)
        self.return_intermediates = bool(return_intermediates)

        def run(x_init, seed):
            return annealed_langevin(self.grad_fn, x_init, self.sigmas, self.n_steps_each, self.step_lr, seed,
                                     denoise=self.denoise, return_intermediates=self.return_intermediates,
                                     return_first_nan=True)

        self._compiled = tf.function(run, jit_compile=jit_compile, reduce_retracing=False)

    def __call__(self, x_init, seed: Seed):
        *outputs, first_nan = self._compiled(tf.convert_to_tensor(x_init), as_seed(seed))
        first_nan = int(first_nan)
        if first_nan >= 0:
            where = describe_step(first_nan, self.sigmas, self.n_steps_each)
            raise SamplingDiverged(f"annealed Langevin dynamics produced NaN/inf {where}; lower step_lr "
                                   f"(now {self.step_lr:g}) or check the network's checkpoint")
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def sample(self, shape: Sequence[int], seed: Seed):
        """Chains started from U(0, 1) of ``shape``; the start and the dynamics use independent streams of seed."""
        init_seed, run_seed = tf.unstack(tf.random.experimental.stateless_split(as_seed(seed), 2))
        return self(uniform_init(shape, init_seed), run_seed)

    @property
    def tracing_count(self) -> int:
        """How many times the compiled function has been traced (1 after any number of same-shape calls)."""
        return self._compiled.experimental_get_tracing_count()


def model_score_fn(model) -> GradFn:
    """``score_fn(x, level)`` of a score network called as ``model([x, labels], training=False)`` (every example of
    the batch at the same level); x (batch, h, w, c) float32."""

    def score_fn(x, level):
        labels = tf.fill(tf.shape(x)[:1], tf.cast(level, tf.int32))
        return model([x, labels], training=False)

    return score_fn


def ncsn_sampler(model, sigmas, n_steps_each: int, step_lr: float, denoise: bool = False,
                 return_intermediates: bool = False, jit_compile: bool = False) -> AnnealedLangevin:
    """A compiled sampler of an NCSN prior: annealed Langevin dynamics on the network's score.

    Example::

        sampler = ncsn_sampler(model, sigmas_from_config(config), config.T, config.step_lr)
        spectrograms = sampler.sample((16, 96, 64, 1), seed=0)   # (16, 96, 64, 1) float32, [0,1]-scaled dB

    The samples are not clipped; clip to [0, 1] before turning them back into dB. ``denoise=True`` adds NCSNv2's
    final step x + sigma_L^2 s(x, sigma_L) (off by default, as NCSN v1 and the seed).
    """
    return AnnealedLangevin(model_score_fn(model), sigmas, n_steps_each, step_lr, denoise=denoise,
                            return_intermediates=return_intermediates, jit_compile=jit_compile)
