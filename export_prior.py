"""Export a trained NCSN as a small prior folder (how pretrained/piano and pretrained/violin were made).

    python export_prior.py TRAINING_RUN OUTPUT_DIR [--overwrite]

TRAINING_RUN is a ``train_ncsn.py`` run folder (or a checkpoint in it). OUTPUT_DIR receives ``tf_ckpts/`` with the
network's weights only -- the EMA weights when the run kept them (``--weights raw``: the trained weights), no
optimizer state, so about a third of the
training checkpoint -- the run's ``config.yml`` and its training log (``training.log``). The folder is a restore
path of ``run_basis_sep.py`` as it is.
"""
from __future__ import annotations

import argparse
import shutil

import core  # noqa: F401  (quiets TensorFlow's start-up logging; must come first)
from core.config import CONFIG_NAME
from core.errors import UserError, run_main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run", metavar="TRAINING_RUN", help="train_ncsn.py run folder or checkpoint")
    parser.add_argument("output", metavar="OUTPUT_DIR", help="the prior folder to write")
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema",
                        help="the moving average of the weights (when the run kept one) or the trained weights "
                             "themselves (better after a short run: an EMA of rate 0.999 still remembers the "
                             "first thousand steps)")
    parser.add_argument("--overwrite", action="store_true", help="replace a prior already in OUTPUT_DIR")
    args = parser.parse_args(argv)

    from core import import_tensorflow
    from core.rundir import check_output_dir
    from core.training import BEST_DIR, resolve_checkpoint
    from ncsn.checkpoints import restore_score_network
    from ncsn.networks import count_parameters

    tf = import_tensorflow()
    prefix, run = resolve_checkpoint(args.run)
    model, _ = restore_score_network(args.run, use_ema=args.weights == "ema")
    output = check_output_dir(args.output, args.overwrite, ("checkpoint", "*.index", CONFIG_NAME))
    if args.overwrite and (output / BEST_DIR).is_dir():
        shutil.rmtree(output / BEST_DIR)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(output / BEST_DIR), max_to_keep=1)
    saved = manager.save()
    shutil.copyfile(run / CONFIG_NAME, output / CONFIG_NAME)
    if (run / "out.log").is_file():
        shutil.copyfile(run / "out.log", output / "training.log")
    size = sum(p.stat().st_size for p in (output / BEST_DIR).iterdir())
    if size == 0:
        raise UserError(f"nothing was written to {output / BEST_DIR}")
    print(f"exported {prefix} ({count_parameters(model):,} parameters) -> {saved} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    run_main(main)
