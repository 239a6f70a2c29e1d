"""Training a flow (Glow, RealNVP) with the suite's training loop; shared by train_glow.py, train_realnvp.py and
train_noisy_glow.py.

The loss of an example is its negative log-likelihood in bits per dimension, bpd = -log p(x) / (D ln 2), so the
numbers in the logs are directly the seed's bits/pixel (1.89 for its best piano Glow). For the noise-conditioned
Glows of BASIS the data are x + N(0, sigma^2) noise, drawn afresh at every step (sigma in the model's units: the
spectrograms are scaled to [-0.5, 0.5]).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from datasets.training_run import TrainingRun
from core.errors import UserError
from core.training import Trainer, TrainState, make_optimizer, tf


def bits_per_dim_loss(flow, noise_sigma: float = 0.0, n_bins: Optional[int] = None, seed: int = 0,
                      dequantizer=None):
    """The per-example loss ``f(batch, training) -> (batch,)`` bits/dim of ``flow`` on (noisy) data.

    Args:
        flow: a flow with ``log_prob(x) -> (batch,)`` in nats.
        noise_sigma: standard deviation of Gaussian noise added to every batch (noise-conditioned Glow).
        n_bins: for 8-bit images dequantised to bins of width 1/n_bins: adds log2(n_bins) per dimension, so the
            figure is the discrete bits/dim of the papers (3.35 for Glow on CIFAR-10).
        dequantizer: a :class:`flow_models.flowpp.VariationalDequantizer` (with ``n_bins``): the batches hold the
            bins' centres, each is moved to its lower edge and dequantised by q, and the loss is minus the
            variational bound in bits/dim (discrete already: the bound holds D log(1 / n_bins)).
    """
    generator = tf.random.Generator.from_seed(seed) if noise_sigma > 0 or dequantizer is not None else None

    def per_example_loss(batch, training):
        dims = tf.cast(tf.reduce_prod(tf.shape(batch)[1:]), tf.float32)
        if dequantizer is not None:
            lower = batch - 0.5 / n_bins
            bound = dequantizer.log_likelihood_bound(flow.log_prob, lower, generator.make_seeds(1)[:, 0])
            return -bound / (dims * math.log(2.0))
        if noise_sigma > 0:
            batch = batch + noise_sigma * generator.normal(tf.shape(batch))
        bpd = -flow.log_prob(batch) / (dims * math.log(2.0))
        return bpd + (math.log2(n_bins) if n_bins else 0.0)

    per_example_loss.random_state = {"noise": generator} if generator is not None else {}  # for the checkpoints
    return per_example_loss


def first_local_batch(dataset, strategy):
    """The first batch of a (distributed) dataset as one tensor on this worker (for data-dependent init)."""
    batch = next(iter(dataset))
    return strategy.experimental_local_results(batch)[0] if strategy.num_replicas_in_sync > 1 else batch


def sample_writer(flow, run: TrainingRun, n_samples: int = 8, temperature: float = 0.7):
    """``on_epoch_end(epoch, writer)`` writing sample grids (and, for spectrograms, Griffin-Lim audio) every
    ``config.sample_every`` epochs."""
    config = run.config
    spectrograms = run.input_shape == (config.n_mels, config.width, 1)

    def write(epoch, writer):
        if not config.sample_every or epoch % config.sample_every:
            return
        samples = flow.sample(n_samples, temperature=temperature, seed=epoch)
        unit = run.scaling.from_model(samples)  # flows see centred [-0.5, 0.5] (or logit) units
        tf.summary.image("samples", unit[:, ::-1] if spectrograms else unit, max_outputs=n_samples)
        if spectrograms:
            from core.spectral import mel_to_audio
            from datasets.preprocessing import from_unit

            params = config.spectrogram_params()
            mel = from_unit(unit.numpy()[..., 0], config.scale, params)
            audio = mel_to_audio(mel[:, None], params, scale=config.scale, n_iter=16)
            tf.summary.audio("samples", audio[..., None], sample_rate=params.sample_rate, max_outputs=n_samples)

    return write


def train_flow(run: TrainingRun, flow, output: Path, noise_sigma: float = 0.0, n_bins: Optional[int] = None,
               seed: int = 0, initialize: bool = True) -> TrainState:
    """Train ``flow`` on ``run``'s data into the run folder ``output`` (resumes if it holds a checkpoint).

    Args:
        run: the prepared run (config, data, strategy, logger).
        flow: a flow built under ``run.strategy.scope()``.
        output: the run folder (for noise-conditioned Glows, one per noise level).
        noise_sigma: Gaussian noise on the data (0: none).
        initialize: run ActNorm's data-dependent initialisation on the first batch before training (skipped when
            the weights come from another checkpoint).
    """
    dequantizer = None
    if run.config.dequantization == "variational":
        if not n_bins or noise_sigma > 0 or run.config.dequantization_noise > 0:
            raise UserError("dequantization: variational dequantizes 8-bit images (mnist, cifar10, an .npz image "
                            "set) and replaces dequantization_noise; use dequantization: uniform here")
        from flow_models.flowpp import VariationalDequantizer

        with run.strategy.scope():
            dequantizer = VariationalDequantizer(run.input_shape[-1], run.config.n_filters, 1.0 / n_bins)
        flow.dequantizer = dequantizer  # trained and checkpointed with the flow (a tf.Module attribute)
    with run.strategy.scope():
        optimizer = make_optimizer(run.config)
    loss = bits_per_dim_loss(flow, noise_sigma, n_bins, seed, dequantizer)
    trainer = Trainer(flow, loss, optimizer, output, strategy=run.strategy, global_batch_size=run.config.batch_size,
                      on_epoch_end=sample_writer(flow, run), spike_factor=run.config.spike_factor,
                      l2_reg=run.config.l2_reg, logger=run.logger, random_state=loss.random_state)
    if initialize and trainer.latest.latest_checkpoint is None:
        flow.initialize(first_local_batch(run.data.train, run.strategy))
    steps = -(-run.data.n_train // run.config.batch_size)
    return trainer.fit(run.data.train, run.data.test, run.config.n_epochs, steps_per_epoch=steps)
