"""BASIS: Bayesian annealed signal separation (Jayaram & Thickstun 2020; docs/algorithms.md §2).

Annealed Langevin dynamics on the posterior of K sources s_1..s_K given a mixture x. At noise level sigma_i, with
step eta_i = delta * (sigma_i / sigma_L)^2, every source moves by

    s_k <- s_k + eta_i * ( score_k(s_k, sigma_i) + (1 / sigma_i^2) * dg/ds_k * (x - g(s)) ) + sqrt(2 eta_i) * z_k

where score_k is source k's prior (an NCSN, or the autodiff gradient of a Glow fine-tuned at sigma_i) and g the
mixing model (:class:`MeanMixing` for images, :class:`DecibelMixing` for dB spectrograms, :class:`SumMixing` for
power spectrograms). All values live in the priors' *model units*: [0, 1]-scaled data for NCSN, [-0.5, 0.5] for
Glow.

:class:`Basis` runs the T steps of a level as one compiled function over all sources and every segment of a
batch, with stateless noise drawn from one seed (a run is reproducible), a NaN check carried along (one reduction
per step), and the level, the first step and the number of steps as tensors: a whole separation traces it once.
Priors whose weights change per level (Glow) get ``prior.set_level(i)`` called between levels.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from core import import_tensorflow
from core.errors import UserError
from core.rundir import atomic_output
from core.spectral import SpectrogramParams
from ncsn.sampling import SamplingDiverged, as_seed, describe_step, langevin_steps
from ncsn.schedule import langevin_step_sizes

tf = import_tensorflow()

MIXING_MODELS = ("mean", "power_sum", "amplitude_sum", "sum")


# ------------------------------------------------------------------------------------------------ mixing models

class MixingModel:
    """g(s): the mixture a set of sources makes, and its gradient, in model units.

    ``sources`` is (K, ...) (one entry per source, any trailing shape); the mixture is (...).
    """

    name = "abstract"

    def __call__(self, sources):
        raise NotImplementedError

    def gradient(self, sources):
        """dg/ds_k, (K, ...): the mixing model is element-wise, so this is the diagonal of the Jacobian."""
        raise NotImplementedError

    def likelihood_direction(self, sources, mixture):
        """dg/ds_k * (x - g(s)), (K, ...): the gradient of -||x - g(s)||^2 / 2 with respect to every source."""
        return self.gradient(sources) * (mixture - self(sources))[tf.newaxis]

    def project(self, sources, mixture):
        """The sources moved, by one common correction per element, so that g(sources) = mixture exactly, (K, ...);
        a no-op where they already mix to it (the mixture-consistency correction)."""
        raise NotImplementedError

    @property
    def can_project(self) -> bool:
        """Whether this model has :meth:`project` (and so :meth:`split`)."""
        return type(self).project is not MixingModel.project

    def split(self, mixture, n_sources: int):
        """K equal sources that mix to ``mixture``: (K, ...) from (...)."""
        return self.project(tf.zeros((n_sources, *mixture.shape), mixture.dtype), mixture)


class MeanMixing(MixingModel):
    """g(s) = mean_k s_k (the toy image mixtures of the seed); dg/ds_k = 1/K."""

    name = "mean"

    def __call__(self, sources):
        return tf.reduce_mean(sources, axis=0)

    def gradient(self, sources):
        return tf.fill(tf.shape(sources), tf.cast(1.0 / sources.shape[0], sources.dtype))

    def project(self, sources, mixture):
        return sources + (mixture - self(sources))[tf.newaxis]


class SumMixing(MixingModel):
    """Power spectrograms: the mixture's mel power is the sum of the sources' (incoherent sources).

    In model units u = power / power_max - offset (offset 0.5 for centred models): g = sum_k (u_k + offset) - offset.
    """

    name = "sum"

    def __init__(self, offset: float = 0.0):
        self.offset = float(offset)

    def __call__(self, sources):
        return tf.reduce_sum(sources + self.offset, axis=0) - self.offset

    def gradient(self, sources):
        return tf.ones_like(sources)

    def project(self, sources, mixture):
        """Every source's power scaled by mixture power / power sum (silent sources share the mixture equally)."""
        power = tf.maximum(sources + self.offset, 0.0)
        total = tf.reduce_sum(power, axis=0)
        share = tf.math.divide_no_nan(power, total[tf.newaxis])
        share = tf.where(total[tf.newaxis] > 0, share, 1.0 / sources.shape[0])
        return share * (mixture + self.offset)[tf.newaxis] - self.offset


class DecibelMixing(MixingModel):
    """dB spectrograms: the power (or amplitude) sum of the sources, applied in dB units.

    With d_k the dB value of source k, g_dB(d) = c * log10( sum_k 10^(d_k / c) ), c = 10 for the power sum (the
    seed's model, docs/algorithms.md §2) and c = 20 for the amplitude sum. The priors work on an affine map of dB,
    m = (d - db_min) / (db_max - db_min) - offset (offset 0.5 for centred models), so g is taken to dB, applied,
    and mapped back -- not applied to the scaled numbers. The map's slope cancels in the gradient:
    dg/dm_k = softmax_k(d * ln10 / c), the share of source k in the mixture's power.
    """

    def __init__(self, params: SpectrogramParams = SpectrogramParams(), offset: float = 0.0,
                 amplitude: bool = False):
        self.db_min = float(params.db_min)
        self.db_range = float(params.db_max - params.db_min)
        self.offset = float(offset)
        self.c = 20.0 if amplitude else 10.0
        self.name = "amplitude_sum" if amplitude else "power_sum"

    def _logits(self, sources):
        decibels = self.db_min + self.db_range * (sources + self.offset)
        return decibels * (math.log(10.0) / self.c)

    def __call__(self, sources):
        g_db = tf.reduce_logsumexp(self._logits(sources), axis=0) * (self.c / math.log(10.0))
        return (g_db - self.db_min) / self.db_range - self.offset

    def gradient(self, sources):
        return tf.nn.softmax(self._logits(sources), axis=0)

    def project(self, sources, mixture):
        """Every source's power (or amplitude) scaled by one factor per element: in dB, the same shift for all
        sources, and g(d + c) = g(d) + c, so the shift is x - g(s) (the map's slope cancels)."""
        return sources + (mixture - self(sources))[tf.newaxis]


def make_mixing_model(name: str, params: SpectrogramParams = SpectrogramParams(), offset: float = 0.0,
                      scale: str = "dB") -> MixingModel:
    """The mixing model called ``name`` (one of :data:`MIXING_MODELS`) for data in ``scale``.

    Raises:
        UserError: an unknown name, or a model that does not fit the scale (dB models need dB data).
    """
    if name == "mean":
        return MeanMixing()
    if name in ("power_sum", "amplitude_sum"):
        if scale == "power":
            if name == "power_sum":
                return SumMixing(offset)
            raise UserError("the amplitude-sum mixing model needs dB spectrograms (scale: dB); for power "
                            "spectrograms use --mixing power_sum")
        return DecibelMixing(params, offset, amplitude=name == "amplitude_sum")
    if name == "sum":
        return SumMixing(offset)
    raise UserError(f"unknown mixing model {name!r}; use one of {', '.join(MIXING_MODELS)}")


# ------------------------------------------------------------------------------------------------------ priors

class Prior:
    """One source's prior: ``score(x, level)`` -> d log p_sigma(x) / dx for x (batch, h, w, c) at noise level
    ``level`` (an int32 scalar tensor, 0 = sigma_1). ``set_level`` is called (eagerly) before each level; priors
    whose weights do not depend on the level ignore it."""

    def score(self, x, level):
        raise NotImplementedError

    def set_level(self, level: int) -> None:
        pass


class ScoreNetworkPrior(Prior):
    """An NCSN: one noise-conditional network, ``model([x, labels])`` gives the score at every level."""

    def __init__(self, model):
        self.model = model

    def score(self, x, level):
        labels = tf.fill(tf.shape(x)[:1], tf.cast(level, tf.int32))
        return self.model([x, labels], training=False)


class FunctionPrior(Prior):
    """A prior given by a function ``score_fn(x, level)`` (e.g. the exact score of a Gaussian, for tests)."""

    def __init__(self, score_fn: Callable):
        self.score_fn = score_fn

    def score(self, x, level):
        return self.score_fn(x, level)


class FlowPrior(Prior):
    """A Glow fine-tuned at every noise level: score = autodiff gradient of log p(x) of the level's model.

    Args:
        flow: the built flow (its variables are overwritten at every level).
        level_weights: per level (0 = sigma_1), a callable that loads that level's weights into ``flow`` (e.g.
            restoring a checkpoint into the same variables: the model is built once, never rebuilt).
    """

    def __init__(self, flow, level_weights: Sequence[Callable[[], None]]):
        self.flow = flow
        self.level_weights = list(level_weights)
        self.level: Optional[int] = None

    def set_level(self, level: int) -> None:
        if level != self.level:
            self.level_weights[level]()
            self.level = level

    def score(self, x, level):
        with tf.GradientTape() as tape:
            tape.watch(x)
            log_prob = tf.reduce_sum(self.flow.log_prob(x))
        return tape.gradient(log_prob, x)


# ------------------------------------------------------------------------------------------------------ BASIS

CONSISTENCY = ("none", "final", "step")


def visited_levels(n_trained: int, start_level: int = 0, n_visited: Optional[int] = None) -> list[int]:
    """The noise levels (indices into the priors' schedule, 0 = sigma_1) BASIS visits: ``n_visited`` of them spread
    evenly from ``start_level`` to the last one (all of them when None), always ending at sigma_L.

    Raises:
        UserError: a start outside the schedule, or fewer than 1 / more than the available levels.
    """
    if not 0 <= start_level < n_trained:
        raise UserError(f"start_level must be in 0..{n_trained - 1} (the priors have {n_trained} noise levels), "
                        f"got {start_level}")
    available = n_trained - start_level
    n_visited = available if n_visited is None else int(n_visited)
    if not 1 <= n_visited <= available:
        raise UserError(f"basis_levels must be in 1..{available} (levels {start_level}..{n_trained - 1} of the "
                        f"priors' {n_trained}), got {n_visited}")
    if n_visited == 1:
        return [n_trained - 1]
    return [int(i) for i in np.round(np.linspace(start_level, n_trained - 1, n_visited))]


class Basis:
    """BASIS for K sources with a fixed schedule, compiled once.

    Args:
        priors: K :class:`Prior` objects, one per source (the same object twice is allowed).
        mixing: the mixing model g.
        sigmas: (L,) the noise levels the priors were trained at, descending, in model units.
        n_steps_each: T, Langevin steps per visited level.
        step_lr: delta; eta_i = delta * (sigma_i / sigma_L)^2 (sigma_L: the last trained level).
        jit_compile: compile the steps with XLA.
        levels: the indices into ``sigmas`` to visit, ascending (:func:`visited_levels`; None: all).
        n_chains: independent chains per mixture; the estimate is their mean (the posterior mean). The chains are
            rows of the same batch: the state is (K, n_chains * batch, ...), chain c of mixture b in row c * batch + b.
        temperature: tau; the noise of a step is sqrt(2 eta_i tau) z, so the chains sample p(s | x)^(1 / tau)
            (1: the posterior; 0: no noise).
        denoise: finish every chain with Tweedie's estimate at the last visited level, s_k + sigma^2 score_k(s_k)
            (one more evaluation of each prior).
        consistency: ``"final"`` projects the estimate onto the mixture (:meth:`MixingModel.project`) at the end,
            ``"step"`` after every Langevin step too.
    Use :meth:`run_level` for one level of a batch (what the script drives, with a progress bar and
    checkpoints between levels), :meth:`start` and :meth:`finish` around them, or :meth:`separate` for the whole
    schedule at once.
    """

    def __init__(self, priors: Sequence[Prior], mixing: MixingModel, sigmas, n_steps_each: int, step_lr: float,
                 jit_compile: bool = False, levels: Optional[Sequence[int]] = None, n_chains: int = 1,
                 denoise: bool = False, consistency: str = "none", temperature: float = 1.0):
        if len(priors) < 2:
            raise UserError(f"BASIS separates at least 2 sources, got {len(priors)} prior(s)")
        if int(n_chains) != n_chains or n_chains < 1:
            raise UserError(f"n_chains must be a whole number of at least 1, got {n_chains}")
        if temperature < 0:
            raise UserError(f"temperature must be at least 0, got {temperature}")
        if consistency not in CONSISTENCY:
            raise UserError(f"unknown consistency {consistency!r}; use one of {', '.join(CONSISTENCY)}")
        if consistency != "none" and not mixing.can_project:
            raise UserError(f"the mixing model {mixing.name} has no consistency projection; use consistency: none")
        self.priors = list(priors)
        self.mixing = mixing
        self.sigmas = np.asarray(sigmas, dtype=np.float32)
        self.levels = list(range(len(self.sigmas))) if levels is None else [int(i) for i in levels]
        if not self.levels or sorted(set(self.levels)) != self.levels or not 0 <= self.levels[0] <= \
                self.levels[-1] < len(self.sigmas):
            raise UserError(f"levels must be distinct ascending indices into the {len(self.sigmas)} noise levels, "
                            f"got {levels}")
        self.n_steps_each = int(n_steps_each)
        self.step_lr = float(step_lr)
        self.n_chains = int(n_chains)
        self.denoise = bool(denoise)
        self.consistency = consistency
        self.temperature = float(temperature)
        steps = langevin_step_sizes(np.asarray(sigmas, np.float64), step_lr)
        self._steps = tf.constant(steps, tf.float32)
        self._noise_scales = tf.constant(np.sqrt(2.0 * steps * self.temperature), tf.float32)
        self._inverse_variances = tf.constant(1.0 / np.asarray(sigmas, np.float64) ** 2, tf.float32)
        self._compiled = tf.function(self._steps_graph, jit_compile=jit_compile, reduce_retracing=False)
        self._compiled_finish = tf.function(self._finish_graph, jit_compile=jit_compile, reduce_retracing=False)

    @property
    def n_levels(self) -> int:
        """How many levels are visited."""
        return len(self.levels)

    @property
    def visited_sigmas(self) -> np.ndarray:
        """(n_levels,) the noise levels visited, descending."""
        return self.sigmas[self.levels]

    @property
    def evaluations(self) -> int:
        """Network evaluations of each prior per mixture (segment): n_chains * (levels * T + denoising step)."""
        return self.n_chains * (self.n_levels * self.n_steps_each + int(self.denoise))

    def describe(self) -> str:
        """The sampler in one line, e.g. '5 of 10 levels 0.3594 -> 0.01, T = 6, step_lr 5e-05, 2 chains, ...'."""
        sigmas = self.visited_sigmas
        extras = [f"{self.n_chains} chains (mean)" if self.n_chains > 1 else "",
                  f"temperature {self.temperature:g}" if self.temperature != 1.0 else "",
                  "final denoising" if self.denoise else "",
                  f"consistency {self.consistency}" if self.consistency != "none" else ""]
        return (f"{self.n_levels} of {len(self.sigmas)} levels {sigmas[0]:.4g} -> {sigmas[-1]:.4g}, "
                f"T = {self.n_steps_each}, step_lr {self.step_lr:g}, mixing {self.mixing.name}"
                + "".join(f", {e}" for e in extras if e) + f"; {self.evaluations} evaluations per prior and segment")

    def _tile(self, mixture):
        return tf.concat([mixture] * self.n_chains, axis=0) if self.n_chains > 1 else mixture

    def prior_scores(self, sources, level):
        """Every prior's score, (K, rows, h, w, c), at ``level``."""
        return tf.stack([prior.score(sources[k], level) for k, prior in enumerate(self.priors)])

    def direction(self, sources, mixture, level):
        """The update direction of every source, (K, batch, h, w, c): prior score + likelihood term / sigma^2."""
        return self.prior_scores(sources, level) + \
            self._inverse_variances[level] * self.mixing.likelihood_direction(sources, mixture)

    def _steps_graph(self, sources, mixture, level, first_step, n_steps, seed):
        mixture = self._tile(mixture)

        def grad_fn(x, level):
            return self.direction(x, mixture, level)

        project = (lambda x: self.mixing.project(x, mixture)) if self.consistency == "step" else None
        return langevin_steps(grad_fn, sources, level, first_step, n_steps, self._steps[level],
                              self._noise_scales[level], self.n_steps_each, seed, tf.constant(-1), project=project)

    def _finish_graph(self, sources, mixture):
        level = tf.constant(self.levels[-1], tf.int32)
        if self.denoise:
            sources = sources + float(self.sigmas[self.levels[-1]]) ** 2 * self.prior_scores(sources, level)
        if self.n_chains > 1:
            shape = tf.shape(sources)
            chains = tf.reshape(sources, tf.concat([shape[:1], [self.n_chains, -1], shape[2:]], axis=0))
            sources = tf.reduce_mean(chains, axis=1)
        if self.consistency != "none":
            sources = self.mixing.project(sources, mixture)
        return sources

    def start(self, mixture, seed, init: str = "uniform", low: float = 0.0):
        """Starting estimates for a batch, (K, n_chains * batch, h, w, c), from ``mixture`` (batch, h, w, c):
        :func:`initial_sources`, or for ``init="mixture"`` the mixture's equal share (:meth:`MixingModel.split`)
        plus N(0, sigma^2) noise of the first visited level."""
        mixture = self._tile(tf.convert_to_tensor(mixture, tf.float32))
        shape = (len(self.priors), *mixture.shape)
        if init == "mixture":
            if not self.mixing.can_project:
                raise UserError(f"the mixing model {self.mixing.name} cannot split a mixture; use another init")
            sigma = float(self.sigmas[self.levels[0]])
            return self.mixing.split(mixture, len(self.priors)) + sigma * tf.random.stateless_normal(
                shape, seed=as_seed(seed))
        return initial_sources(shape, seed, init, low)

    def run_level(self, sources, mixture, level: int, seed, first_step: int = 0, n_steps: Optional[int] = None):
        """Run steps ``first_step .. first_step + n_steps - 1`` of level ``level`` (an index into ``sigmas``).

        Args:
            sources: (K, n_chains * batch, h, w, c) float32, the current estimates in model units.
            mixture: (batch, h, w, c) float32, the mixture in model units.
            seed: the batch's stateless seed (int or pair); the same seed, level and steps give the same result.
        Returns:
            (K, n_chains * batch, h, w, c) float32, the estimates after these steps.
        Raises:
            SamplingDiverged: the state became NaN or inf (the message names the level and step).
        """
        if level < 0 or level >= len(self.sigmas):
            raise ValueError(f"level {level} outside 0..{len(self.sigmas) - 1}")
        n_steps = self.n_steps_each - first_step if n_steps is None else int(n_steps)
        for prior in self.priors:
            prior.set_level(level)
        sources, first_nan = self._compiled(tf.convert_to_tensor(sources, tf.float32),
                                            tf.convert_to_tensor(mixture, tf.float32), tf.constant(level, tf.int32),
                                            tf.constant(first_step, tf.int32), tf.constant(n_steps, tf.int32),
                                            as_seed(seed))
        first_nan = int(first_nan)
        if first_nan >= 0:
            raise SamplingDiverged(f"BASIS produced NaN/inf {describe_step(first_nan, self.sigmas, self.n_steps_each)}"
                                   f"; lower step_lr (now {self.step_lr:g}) or check the priors' checkpoints")
        return sources

    def finish(self, sources, mixture):
        """The estimate of a batch from its chains after the last level, (K, batch, h, w, c): the denoising step,
        the mean over chains and the consistency projection, as configured (the identity by default)."""
        if not (self.denoise or self.n_chains > 1 or self.consistency != "none"):
            return tf.convert_to_tensor(sources, tf.float32)
        for prior in self.priors:
            prior.set_level(self.levels[-1])
        return self._compiled_finish(tf.convert_to_tensor(sources, tf.float32),
                                     tf.convert_to_tensor(mixture, tf.float32))

    def chain_mean(self, sources):
        """(K, n_chains * batch, ...) -> (K, batch, ...), the mean over chains (what the history records)."""
        sources = np.asarray(sources)
        return sources.reshape(sources.shape[0], self.n_chains, -1, *sources.shape[2:]).mean(axis=1)

    def separate(self, mixture, init, seed, return_intermediates: bool = False):
        """The whole schedule on one batch.

        Args:
            mixture: (batch, h, w, c) in model units.
            init: (K, n_chains * batch, h, w, c) starting estimates (:meth:`start`).
        Returns:
            (K, batch, h, w, c) estimates (:meth:`finish`), and with ``return_intermediates`` the chains' mean
            after every visited level, (n_levels, K, batch, h, w, c).
        """
        sources, history = tf.convert_to_tensor(init, tf.float32), []
        for level in self.levels:
            sources = self.run_level(sources, mixture, level, seed)
            history.append(self.chain_mean(sources))
        sources = self.finish(sources, mixture)
        return (sources, tf.stack(history)) if return_intermediates else sources

    @property
    def tracing_count(self) -> int:
        """How many times the compiled steps were traced (1 for any number of levels, steps and seeds)."""
        return self._compiled.experimental_get_tracing_count()


def initial_sources(shape: Sequence[int], seed, init: str = "uniform", low: float = 0.0) -> tf.Tensor:
    """Starting estimates of shape (K, batch, h, w, c): U(low, low + 1) (the data range) or N(0, 1)."""
    seed = as_seed(seed)
    if init == "uniform":
        return tf.random.stateless_uniform(shape, seed=seed) + low
    if init == "normal":
        return tf.random.stateless_normal(shape, seed=seed)
    raise UserError(f"unknown init {init!r}; use uniform or normal")


def _save_state(path: Path, **arrays) -> None:
    """Write a resume state atomically (a crash while writing leaves the previous state intact)."""
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def read_resume_state(path: Path, fingerprint: str, shape: Optional[tuple] = None) -> Optional[dict]:
    """A resume state written for the same run (same fingerprint and, when given, shapes), or None if there is none.
    Scripts call it before they write anything into the output folder, so that a refused resume changes nothing.

    Raises:
        UserError: a state of another run is there.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is not a readable resume state ({err}); delete it to start again") from None
    if str(state.get("fingerprint")) != fingerprint or (shape is not None and
                                                        tuple(state["sources"].shape) != tuple(shape)):
        raise UserError(f"{path} holds an unfinished separation with other settings (priors, config, song, seed "
                        "or batch size); use another --output, or --overwrite to start again")
    return state


def separate_in_batches(basis: Basis, mixture: np.ndarray, seed: int, batch_size: int, init: str = "uniform",
                        low: float = 0.0, state_path: Optional[str | os.PathLike] = None, fingerprint: str = "",
                        progress=None, chunk_steps: int = 20, logger=None):
    """Separate N mixtures (segments or images) in batches of ``batch_size``, level by level.

    The levels are the outer loop (a Glow prior restores each level's weights once, not once per batch); within a
    level every batch runs its T steps in pieces of ``chunk_steps`` (for the progress bar). The last batch is padded
    to ``batch_size`` with copies of the first mixtures, so every call has the same shapes (one trace). Batch b
    draws its start and noise from fold_in(seed, b): a run is reproducible for a given ``batch_size``. With
    ``basis.n_chains`` > 1 each batch holds n_chains * batch_size chains.

    Args:
        mixture: (N, h, w, c) float32 mixtures in model units.
        init, low: starting estimates (:meth:`Basis.start`).
        state_path: a file where the state (every chain) is saved after every level; a run that finds one with the
            same ``fingerprint`` resumes after its last finished level.
        progress: an object with ``update(n)`` (e.g. tqdm over n_levels * n_batches * T steps), or None.
    Returns:
        (estimates, history): (K, N, h, w, c) float32 (:meth:`Basis.finish`) and the chains' mean after every
        visited level, (n_levels, K, N, h, w, c).
    Raises:
        SamplingDiverged: NaN/inf during the dynamics; the state of the last finished level stays in ``state_path``
            (and the message says so).
    """
    mixture = np.asarray(mixture, np.float32)
    n, n_sources = mixture.shape[0], len(basis.priors)
    batch_size = max(1, min(int(batch_size), n))
    n_batches = -(-n // batch_size)
    padded = np.concatenate([mixture, mixture[np.arange(n_batches * batch_size - n) % n]])
    mixtures = [padded[b * batch_size:(b + 1) * batch_size] for b in range(n_batches)]  # views, one per batch
    seed = as_seed(seed)
    batch_seeds = [tf.random.experimental.stateless_fold_in(seed, b) for b in range(n_batches)]
    rows_per_batch = basis.n_chains * batch_size
    shape = (n_sources, n_batches * rows_per_batch, *mixture.shape[1:])
    state_path = Path(state_path) if state_path is not None else None
    state = read_resume_state(state_path, fingerprint, shape) if state_path is not None else None
    if state is not None:
        sources, history, done = state["sources"], list(state["history"]), int(state["levels_done"])
        if logger is not None:
            logger.info("resuming from %s: %d of %d levels done", state_path, done, basis.n_levels)
        if progress is not None:
            progress.update(done * n_batches * basis.n_steps_each)
    else:
        starts = [basis.start(mixtures[b], tf.random.experimental.stateless_fold_in(s, -1), init, low)
                  for b, s in enumerate(batch_seeds)]
        sources, history, done = np.concatenate([x.numpy() for x in starts], axis=1), [], 0

    def batch_rows(b):
        return slice(b * rows_per_batch, (b + 1) * rows_per_batch)

    for i in range(done, basis.n_levels):
        level = basis.levels[i]
        new = np.empty_like(sources)
        for b in range(n_batches):
            x = sources[:, batch_rows(b)]
            for first in range(0, basis.n_steps_each, chunk_steps):
                count = min(chunk_steps, basis.n_steps_each - first)
                try:
                    x = basis.run_level(x, mixtures[b], level, batch_seeds[b], first, count)
                except SamplingDiverged as err:
                    kept = (f"; the estimates after level {basis.levels[i - 1] + 1} are kept in {state_path}"
                            if state_path is not None and i > 0 else "")
                    raise SamplingDiverged(f"{err} (batch {b + 1}/{n_batches}){kept}") from None
                if progress is not None:
                    progress.update(count)
            new[:, batch_rows(b)] = x.numpy()
        sources = new
        history.append(np.concatenate([basis.chain_mean(sources[:, batch_rows(b)]) for b in range(n_batches)],
                                      axis=1)[:, :n])
        if state_path is not None:
            _save_state(state_path, fingerprint=np.array(fingerprint), sources=sources,
                        history=np.stack(history), levels_done=np.array(i + 1))
    estimates = np.concatenate([basis.finish(sources[:, batch_rows(b)], mixtures[b]).numpy()
                                for b in range(n_batches)], axis=1)
    return estimates[:, :n], np.stack(history)


def psnr(estimate: np.ndarray, reference: np.ndarray, peak: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB per image: 10 log10(peak^2 / MSE); arrays (n, ...), result (n,)."""
    estimate = np.asarray(estimate, np.float64)
    reference = np.asarray(reference, np.float64)
    mse = np.mean((estimate - reference) ** 2, axis=tuple(range(1, reference.ndim)))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(peak ** 2 / mse)


def best_permutation_psnr(estimates: np.ndarray, references: np.ndarray, peak: float = 1.0):
    """PSNR of two-source separations, taking for each example the better of the two source orders.

    Args:
        estimates, references: (2, n, ...) images in [0, peak].
    Returns:
        (psnr, swapped): (2, n) PSNR of each reference's matched estimate, and (n,) bool, True where the estimates
        were matched to the references in swapped order.
    """
    estimates, references = np.asarray(estimates), np.asarray(references)
    if estimates.shape[0] != 2 or references.shape != estimates.shape:
        raise ValueError(f"expected (2, n, ...) estimates and references, got {estimates.shape}, {references.shape}")
    straight = np.stack([psnr(estimates[k], references[k], peak) for k in range(2)])
    crossed = np.stack([psnr(estimates[1 - k], references[k], peak) for k in range(2)])
    swapped = crossed.mean(axis=0) > straight.mean(axis=0)
    return np.where(swapped[None], crossed, straight), swapped
