"""Train a noise-conditional score network (NCSN v1/v2) on one source's mel-spectrograms (or MNIST/CIFAR-10).

    python train_ncsn.py --dataset DATASET_FOLDER/<source> --config configs/melspec_ncsnv1.yml [--output DIR]

Data are [0,1]-scaled (dB mapped from [-100, 20]). The loss is denoising score matching with sigma drawn per
example from the config's schedule. The run folder (default trained_ncsn/) gets config.yml, out.log, the best
checkpoint by test loss (tf_ckpts/), the latest one (tf_ckpts_latest/, re-running resumes from it) and TensorBoard
logs with sample grids every `sample_every` epochs. Every config key can be given as a flag and overrides the file.
"""
from __future__ import annotations

import contextlib

import core  # noqa: F401  (quiets TensorFlow's start-up logging; must come first)
from datasets.training_run import prepare_training, training_parser
from core.errors import run_main


def main(argv=None) -> int:
    parser = training_parser(__doc__.splitlines()[0], default_output="trained_ncsn")
    parser.add_argument("--n_samples", type=int, default=8, help="samples drawn for each TensorBoard grid")
    parser.add_argument("--init_from", default=None, metavar="RUN",
                        help="start a new run from the weights of this trained prior (a run folder such as "
                             "pretrained/piano, or a checkpoint): fine-tuning; ignored when --output already holds "
                             "a checkpoint to resume from")
    args = parser.parse_args(argv)
    run = prepare_training(args, required=("n_filters",), centered=False, argv=argv)

    from core.training import Trainer, make_optimizer, tf
    from ncsn.losses import per_example_dsm_loss
    from ncsn.networks import ARCHITECTURE_KEYS, EMAWeights, build_score_network, parameter_summary
    from ncsn.sampling import ncsn_sampler
    from ncsn.schedule import sigmas_from_config

    config = run.config
    sigmas = sigmas_from_config(config)
    with run.strategy.scope():
        model = build_score_network(config, run.input_shape)
        optimizer = make_optimizer(config)
        ema = EMAWeights(model, config.ema_rate) if config.ema else None
        generator = tf.random.Generator.from_seed(args.seed)
    run.logger.info("NCSN %s, %d filters, %d noise levels %.4g -> %.4g (%s)", config.version, config.n_filters,
                    config.num_classes, sigmas[0], sigmas[-1], config.progression)
    parameter_summary(model, print_fn=run.logger.debug)
    run.logger.info("parameters: %s", f"{sum(int(tf.size(v)) for v in model.trainable_variables):,}")

    def per_example_loss(batch, training):
        return per_example_dsm_loss(model, batch, sigmas, generator=generator, training=training)

    sampler = ncsn_sampler(model, sigmas, config.T, config.step_lr, denoise=True)

    def write_samples(epoch, writer):
        if not config.sample_every or epoch % config.sample_every:
            return
        with ema.swapped() if ema is not None else contextlib.nullcontext():
            samples = sampler.sample((args.n_samples, *run.input_shape), seed=epoch)
        images = tf.clip_by_value(samples, 0.0, 1.0)
        if run.input_shape[-1] == 1 and run.input_shape[:2] == (config.n_mels, config.width):
            images = images[:, ::-1]  # spectrograms: low frequencies at the bottom
        tf.summary.image("samples", images, max_outputs=args.n_samples)

    steps = -(-run.data.n_train // config.batch_size)
    trainer = Trainer(model, per_example_loss, optimizer, run.output, strategy=run.strategy,
                      global_batch_size=config.batch_size, ema=ema, on_epoch_end=write_samples,
                      spike_factor=config.spike_factor, l2_reg=config.l2_reg, logger=run.logger,
                      random_state={"noise": generator})
    state = trainer.fit(run.data.train, run.data.test, config.n_epochs, steps_per_epoch=steps,
                        init_from=args.init_from, config=config, architecture_keys=ARCHITECTURE_KEYS)
    run.logger.info("done: %d epochs, best test loss %.4f, best checkpoint %s", state.epochs_done,
                    state.best_test_loss, state.best_checkpoint)
    return 0


if __name__ == "__main__":
    run_main(main)
