"""Train a noise-conditional score network (NCSN v1/v2) on one source's mel-spectrograms.

    python train_ncsn.py --dataset DATASET_FOLDER/<source> --config configs/... [--output trained_ncsn/...] [--KEY VALUE ...]

Every config key can be given as a flag and overrides the file; the resolved config is written to
OUTPUT/config.yml and the log to OUTPUT/out.log.
"""
from __future__ import annotations

import core  # noqa: F401  (quiets TensorFlow's start-up logging; must come first)
from core.cli import prepare_training, training_parser
from core.errors import run_main


def main(argv=None) -> int:
    parser = training_parser(__doc__.splitlines()[0], default_output="trained_ncsn")
    args = parser.parse_args(argv)
    run = prepare_training(args, required=("n_filters",), centered=False, argv=argv)
    run.logger.error("%s: the NCSN model and its training loop (ncsn/) are not part of this version of the suite yet; "
                     "config and data are checked and recorded in %s", parser.prog, run.output)
    return 1


if __name__ == "__main__":
    run_main(main)
