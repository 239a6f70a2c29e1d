"""Fine-tune a trained Glow at every noise level of the BASIS schedule, from sigma_L up to sigma_1.

    python train_noisy_glow.py RESTORE_PATH --dataset DATASET_FOLDER/<source> --config configs/melspec_noisy_glow.yml

RESTORE_PATH is a train_glow.py run folder (its best checkpoint) or a checkpoint. Level by level, from the smallest
sigma to the largest, the Glow is trained on data + N(0, sigma^2) noise (sigma in the model's [-0.5, 0.5] units),
each level starting from the previous level's weights, and written to OUTPUT/sigma_<round(sigma,2)>/ (its
tf_ckpts/ is what run_basis_sep.py restores). Re-running resumes at the first unfinished level.
"""
from __future__ import annotations

import core  # noqa: F401  (quiets TensorFlow's start-up logging; must come first)
from datasets.training_run import prepare_training, training_parser
from core.errors import UserError, run_main

def main(argv=None) -> int:
    parser = training_parser(__doc__.splitlines()[0], default_output="noise_conditioned_flows")
    parser.add_argument("restore_path", metavar="RESTORE_PATH", help="train_glow.py run folder or checkpoint")
    args = parser.parse_args(argv)
    run = prepare_training(args, required=("L", "K", "n_filters"), centered=True, argv=argv)

    from core.training import BEST_DIR, LATEST_DIR, restore_model_weights
    from flow_models.glow import ARCHITECTURE_KEYS, build_flow, level_folder
    from flow_models.training import train_flow
    from ncsn.schedule import sigmas_from_config

    sigmas = sorted(float(s) for s in sigmas_from_config(run.config))  # smallest first
    names = [level_folder(s) for s in sigmas]
    if len(set(names)) != len(names):
        raise UserError(f"two noise levels round to the same folder name ({', '.join(names)}); "
                        "use fewer num_classes or a wider sigma range")
    with run.strategy.scope():
        flow = build_flow(run.config, run.input_shape)
    previous = args.restore_path
    for index, (sigma, name) in enumerate(zip(sigmas, names), start=1):
        level = run.output / name
        run.logger.info("level %d/%d: sigma %.4g -> %s", index, len(sigmas), sigma, level)
        if not (level / LATEST_DIR / "checkpoint").is_file():
            restored = restore_model_weights(flow, previous, run.config, ARCHITECTURE_KEYS)
            run.logger.info("starting from %s", restored)
        state = train_flow(run, flow, level, noise_sigma=sigma, seed=args.seed + index, initialize=False)
        run.logger.info("level %d/%d done: best test bits/dim %.4f", index, len(sigmas), state.best_test_loss)
        previous = level / BEST_DIR
    return 0


if __name__ == "__main__":
    run_main(main)
