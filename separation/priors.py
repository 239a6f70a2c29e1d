"""Loading the per-source priors of BASIS from what the training scripts wrote.

* NCSN (``--model ncsn``): a restore path is a ``train_ncsn.py`` run folder (its best checkpoint), a checkpoint
  folder or a checkpoint prefix (:mod:`ncsn.checkpoints`). The network is built from the separation's config;
  when the run folder has its own ``config.yml``, the keys that fix the network and its noise levels must agree.
* Glow (``--model glow``): a restore path is the output folder of ``train_noisy_glow.py``, holding
  ``sigma_<round(sigma, 2)>/tf_ckpts`` for every noise level of the config's schedule. The flow is built once;
  each level's weights are restored into it when BASIS reaches that level.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from core import import_tensorflow
from core.config import CONFIG_NAME, Config, load_config
from core.errors import UserError
from core.training import BEST_DIR, check_trained_config, resolve_checkpoint, restore_model_weights
from ncsn.networks import ARCHITECTURE_KEYS
from separation.basis import FlowPrior, Prior, ScoreNetworkPrior
from separation.separate import model_scaling

tf = import_tensorflow()

MODELS = ("ncsn", "glow")


def load_ncsn_prior(path: str | os.PathLike, config: Config, input_shape: Sequence[int]) -> ScoreNetworkPrior:
    """The score network at ``path``, built from ``config`` (EMA weights when the run kept them).

    Raises:
        UserError: no checkpoint there, or a checkpoint trained with other network keys (the message names the
            path and both values).
    """
    from ncsn.checkpoints import restore_score_network

    _, run = resolve_checkpoint(path)
    check_trained_config(path, run, config, ARCHITECTURE_KEYS)  # network shape, noise levels
    model, _ = restore_score_network(path, config, tuple(input_shape))
    return ScoreNetworkPrior(model)


def load_glow_prior(path: str | os.PathLike, config: Config, input_shape: Sequence[int], sigmas) -> FlowPrior:
    """A Glow fine-tuned at every level of ``sigmas`` (``path/sigma_<s>/tf_ckpts``), as a :class:`FlowPrior`.

    Every level's checkpoint is checked now (it exists and fits the model); the weights are read again when the
    level is reached, so that only one set is held in memory.

    Raises:
        UserError: ``path`` is not a folder, a level's folder is missing (named, with the folders found), or a
            checkpoint does not fit the config.
    """
    from flow_models.glow import ARCHITECTURE_KEYS, build_flow, level_folder

    path = Path(path)
    if not path.is_dir():
        raise UserError(f"Glow restore path {path} is not a folder: give the --output folder of train_noisy_glow.py "
                        "(it holds sigma_<s>/tf_ckpts for every noise level)")
    check_trained_config(path, path, config, ARCHITECTURE_KEYS)  # train_noisy_glow.py's config.yml
    flow = build_flow(config, tuple(input_shape))
    flow.log_prob(tf.zeros((1, *input_shape)))  # creates the variables
    folders = [path / level_folder(s) for s in sigmas]
    for folder in folders:
        if not (folder / BEST_DIR / "checkpoint").is_file():
            found = sorted(p.name for p in path.glob("sigma_*")) or ["none"]
            raise UserError(f"no Glow checkpoint {folder / BEST_DIR} for noise level {folder.name[6:]}: "
                            f"{path} has {', '.join(found)}; train every level of the config's schedule with "
                            "train_noisy_glow.py (same sigma1, sigmaL, num_classes)")
    for folder in folders[::-1]:  # checks each level fits; ends with the weights of sigma_1
        restore_model_weights(flow, folder / BEST_DIR, config, ARCHITECTURE_KEYS)

    def loader(folder: Path):
        return lambda: restore_model_weights(flow, folder / BEST_DIR)

    prior = FlowPrior(flow, [loader(folder) for folder in folders])
    prior.level = 0
    return prior


def _training_config(path: str | os.PathLike) -> Config | None:
    """The config.yml of the run a restore path belongs to (a prior folder, a run, a checkpoint), if it has one."""
    path = Path(path)
    for folder in (path, path.parent, path.parent.parent):
        if (folder / CONFIG_NAME).is_file():
            return load_config(folder / CONFIG_NAME)
    return None


def load_priors(model: str, paths: Sequence[str | os.PathLike], config: Config, input_shape: Sequence[int],
                sigmas) -> list[Prior]:
    """One prior per restore path; the same path given twice is loaded once and shared.

    Raises:
        UserError: an unknown model, a config (or a prior's training config.yml) with ``use_logit: true`` (BASIS's
            mixing models work on [0, 1] units, or centred ones for Glow, not on logits), or what the loaders raise.
    """
    if model not in MODELS:
        raise UserError(f"unknown model {model!r}; use one of {', '.join(MODELS)}")
    model_scaling(config, model)  # refuses logit units
    for path in paths:
        trained = _training_config(path)
        if trained is not None and trained.use_logit:
            raise UserError(f"{path} was trained with use_logit: true; BASIS separates in [0, 1] units (centred for "
                            "Glow), not logits: train the prior without use_logit")
    loaded: dict[str, Prior] = {}
    priors = []
    for path in paths:
        key = str(Path(path).resolve())
        if key not in loaded:
            loaded[key] = (load_ncsn_prior(path, config, input_shape) if model == "ncsn"
                           else load_glow_prior(path, config, input_shape, sigmas))
        priors.append(loaded[key])
    return priors
