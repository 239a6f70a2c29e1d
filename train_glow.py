"""Train a Glow prior on one source's mel-spectrograms (or MNIST/CIFAR-10); Flow++ with ``--flow flowpp``.

    python train_glow.py --dataset DATASET_FOLDER/<source> --config configs/melspec_glow.yml [--output DIR]

Data are scaled to [-0.5, 0.5] (dB mapped from [-100, 20]); the loss is the negative log-likelihood in bits per
dimension. The run folder (default trained_flows/) gets config.yml, out.log, the best checkpoint by test loss (tf_ckpts/),
the latest one (tf_ckpts_latest/, re-running resumes from it) and TensorBoard logs with sample grids (and sample
audio for spectrograms) every `sample_every` epochs. Every config key can be given as a flag.
"""
from __future__ import annotations

from typing import Optional

import core  # noqa: F401  (quiets TensorFlow's start-up logging; must come first)
from datasets.training_run import prepare_training, training_parser
from core.errors import run_main


def main(argv=None, kind: Optional[str] = None, description: str = __doc__) -> int:
    """Train a flow of ``kind`` ("glow", "realnvp", "flowpp"; None: the config's ``flow``, Glow by default);
    ``description`` is the script's docstring."""
    parser = training_parser(description.splitlines()[0], default_output="trained_flows")
    args = parser.parse_args(argv)
    run = prepare_training(args, required=("L", "K", "n_filters"), centered=True, argv=argv)

    from flow_models.glow import build_flow
    from flow_models.training import train_flow

    with run.strategy.scope():
        flow = build_flow(run.config, run.input_shape, kind=kind)
    run.logger.info("%s", flow.summary())
    from datasets.data_loader import is_image_dataset

    state = train_flow(run, flow, run.output, n_bins=256 if is_image_dataset(args.dataset[0]) else None,
                       seed=args.seed)
    run.logger.info("done: %d epochs, best test bits/dim %.4f, best checkpoint %s", state.epochs_done,
                    state.best_test_loss, state.best_checkpoint)
    return 0


if __name__ == "__main__":
    run_main(main)
