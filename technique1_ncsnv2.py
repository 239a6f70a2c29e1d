"""NCSNv2 technique 1: sigma_1 = the largest Euclidean distance between two training spectrograms.

    python technique1_ncsnv2.py --dataset DATASET_FOLDER/<source> [--config FILE] [--split train] [--block_size N]

The spectrograms are read from DATASET/<split>/*.tfrecord and scaled as the NCSN sees them ([0, 1], from the
config's ``scale``, ``db_min``/``db_max``); the distance is exact (every pair, in float64), computed in blocks of
N spectrograms so memory stays bounded (the files are read once per block). Prints sigma_1 and a YAML line for
the config; then run technique2and4_ncsnv2.py for num_classes, T and step_lr.
"""
from __future__ import annotations

import argparse

import core  # noqa: F401  (quiets TensorFlow's start-up logging; must come first)
from core.errors import UserError, run_main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", required=True, metavar="DIR",
                        help="DATASET_FOLDER/<source>, holding train/ and test/ folders of .tfrecord files")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="YAML config for height, width, scale, db_min, db_max (default: the suite's defaults, "
                             "96x64 dB)")
    parser.add_argument("--split", default="train", choices=("train", "test"), help="which split to measure")
    parser.add_argument("--block_size", type=int, default=1024, metavar="N",
                        help="spectrograms per block (memory: two blocks and an N x N matrix of float64)")
    args = parser.parse_args(argv)
    if args.block_size < 1:
        raise UserError(f"--block_size must be at least 1, got {args.block_size}")

    from core import import_tensorflow
    from core.config import load_config
    from datasets.data_loader import Scaling, check_tfrecords, list_tfrecords, make_dataset
    from ncsn.techniques import max_pairwise_distance

    config = load_config(args.config)
    shape = (config.height, config.width)
    files = list_tfrecords(args.dataset, args.split)
    import_tensorflow()
    n_examples = check_tfrecords(files, shape, config.scale)
    scaling = Scaling(scale=config.scale, params=config.spectrogram_params())
    dataset = make_dataset(files, batch_size=args.block_size, scaling=scaling, shape=shape, shuffle=False,
                           cache=False)
    sigma1 = max_pairwise_distance(dataset, block_size=args.block_size, progress=True,
                                   description=f"sigma_1 over {n_examples} spectrograms (block pairs)",
                                   n_examples=n_examples)
    print(f"sigma_1 = {sigma1:.6g}: the largest Euclidean distance between two of the {n_examples} {args.split} "
          f"spectrograms of {args.dataset} ({config.height}x{config.width}, {config.scale} scaled to [0, 1])")
    print("config line (then run technique2and4_ncsnv2.py --sigma1 ... for num_classes, T and step_lr):")
    print(f"sigma1: {sigma1:.6g}")
    return 0


if __name__ == "__main__":
    run_main(main)
