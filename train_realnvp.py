"""Train a RealNVP prior on one source's mel-spectrograms (or MNIST/CIFAR-10).

    python train_realnvp.py --dataset DATASET_FOLDER/<source> --config configs/tiny_glow.yml [--output DIR]

The same script as train_glow.py (same flags, run folder, loss in bits/dim, resume) with RealNVP's masked affine
couplings instead of Glow's steps (see flow_models/glow.py).
"""
from __future__ import annotations

import core  # noqa: F401  (quiets TensorFlow's start-up logging; must come first)
from core.errors import run_main
from train_glow import main as train_flow_main


def main(argv=None) -> int:
    return train_flow_main(argv, kind="realnvp", description=__doc__)


if __name__ == "__main__":
    run_main(main)
