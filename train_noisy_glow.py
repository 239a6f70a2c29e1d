"""Fine-tune a trained Glow at every noise level of the BASIS schedule, from sigma_L up to sigma_1.

    python train_noisy_glow.py RESTORE_PATH --dataset DATASET_FOLDER/<source> --config configs/melspec_noisy_glow.yml

Writes OUTPUT/sigma_<round(sigma,2)>/tf_ckpts, the layout run_basis_sep.py reads. Every config key can be given
as a flag and overrides the file; the resolved config is written to OUTPUT/config.yml.
"""
from __future__ import annotations

from pathlib import Path

import core  # noqa: F401  (quiets TensorFlow's start-up logging; must come first)
from core.cli import prepare_training, training_parser
from core.errors import UserError, run_main


def main(argv=None) -> int:
    parser = training_parser(__doc__.splitlines()[0], default_output="noise_conditioned_flows")
    parser.add_argument("restore_path", metavar="RESTORE_PATH", help="run folder or checkpoint of a trained Glow")
    args = parser.parse_args(argv)
    if not Path(args.restore_path).exists():
        raise UserError(f"RESTORE_PATH {args.restore_path} does not exist: give the --output folder of "
                        "train_glow.py or one of its checkpoints")
    run = prepare_training(args, required=("L", "K", "n_filters"), centered=True, argv=argv)
    run.logger.error("%s: the Glow model and its fine-tuning loop (flow_models/) are not part of this version "
                     "of the suite yet; config and data are checked and recorded in %s", parser.prog, run.output)
    return 1


if __name__ == "__main__":
    run_main(main)
