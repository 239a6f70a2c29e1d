"""What every training script does before its model: arguments, config, output folder, data.

The training scripts (``train_ncsn.py``, ``train_glow.py``, ``train_noisy_glow.py``) differ only in their model,
loss and defaults; they share the flags ``--dataset``, ``--config``, ``--output``, ``--seed`` and one flag per
config key, and :func:`prepare_training` turns those into a resolved config (written to ``OUTPUT/config.yml``),
a logger writing ``OUTPUT/out.log``, and validated train/test pipelines.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
from pathlib import Path
from typing import Iterable, Optional

from core.config import CONFIG_NAME, Config, add_config_arguments, config_overrides, load_config, save_config
from core.errors import UserError
from core.rundir import setup_logging


def training_parser(description: str, default_output: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every training script shares."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", required=True, nargs="+", metavar="DIR",
                        help="DATASET_FOLDER/<source>, holding train/ and test/ folders of .tfrecord files (several "
                             "such folders are pooled, e.g. data/multi_timbre/tfrecords/piano "
                             "data/fiddle_duos/tfrecords/piano); "
                             "or mnist / cifar10 (toy images through tensorflow-datasets), or an offline .npz image set "
                             "(train and test arrays of 8-bit pixels)")
    parser.add_argument("--output", default=default_output, metavar="DIR",
                        help="run folder: config.yml, out.log, checkpoints, TensorBoard logs; "
                             "re-running on the same folder resumes")
    parser.add_argument("--seed", type=int, default=0, help="random seed (data order, initialisation)")
    parser.add_argument("--strategy", default="default", choices=("default", "mirrored", "multiworker"),
                        help="tf.distribute strategy: one device, all local GPUs, or several machines (TF_CONFIG)")
    add_config_arguments(parser)
    return parser


@dataclasses.dataclass
class TrainingRun:
    """A prepared training run: resolved config, run folder, logger and data."""

    config: Config
    output: Path
    logger: logging.Logger
    data: object  # datasets.data_loader.SourceData
    strategy: object  # tf.distribute.Strategy
    input_shape: tuple  # (height, width, channels) of one example
    scaling: object = None  # datasets.data_loader.Scaling: the model units of the data


def prepare_training(args: argparse.Namespace, required: Iterable[str], centered: bool,
                     argv: Optional[list[str]] = None) -> TrainingRun:
    """Resolve the config (file + flags), open the run folder, and load the dataset.

    Args:
        args: parsed arguments of :func:`training_parser`.
        required: config keys the model needs.
        centered: scale the data to [-0.5, 0.5] (flows) instead of [0, 1] (score networks).
    Raises:
        UserError: bad config or dataset.
    """
    from core.training import make_strategy  # imports TensorFlow (quietly)
    from datasets.data_loader import (Scaling, SpectrogramAugment, image_shape, is_image_dataset, load_image_data,
                                      load_source_data)

    import tf_keras as keras

    keras.utils.set_random_seed(args.seed)  # Python, NumPy and TensorFlow: initialisation and noise from --seed
    strategy = make_strategy(args.strategy)
    config = load_config(args.config, config_overrides(args), required=required)
    scaling = Scaling.from_config(config, centered)
    if len(args.dataset) > 1 and any(is_image_dataset(d) for d in args.dataset):
        raise UserError("--dataset: toy image sets (mnist, cifar10, .npz) cannot be pooled with other datasets")
    dataset = args.dataset[0] if len(args.dataset) == 1 else list(args.dataset)
    if isinstance(dataset, str) and is_image_dataset(dataset):
        height, width, channels = image_shape(dataset)
        config = dataclasses.replace(config, height=height, width=width)
        data = load_image_data(dataset, config.batch_size, scaling, strategy=strategy, seed=args.seed)
    else:
        channels = 1
        augment = SpectrogramAugment(gain_db=config.augment_gain_db, tilt_db=config.augment_tilt_db,
                                     peak_db=config.augment_peak_db, params=config.spectrogram_params())
        data = load_source_data(dataset, config.batch_size, scaling, (config.height, config.width),
                                strategy=strategy, seed=args.seed, augment=augment)
    output = Path(args.output)
    logger = setup_logging(output)
    save_config(config, output / CONFIG_NAME)
    logger.info("command: %s", shlex.join([sys.executable, *(argv if argv is not None else sys.argv)]))
    logger.info("dataset %s: %d train and %d test spectrograms of %dx%d (%s)", " + ".join(args.dataset), data.n_train,
                data.n_test, config.height, config.width, config.scale)
    logger.info("strategy: %s with %d replica(s)", args.strategy, strategy.num_replicas_in_sync)
    return TrainingRun(config, output, logger, data, strategy, (config.height, config.width, channels), scaling)
