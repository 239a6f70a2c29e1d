"""Restoring a trained score network from what ``train_ncsn.py`` wrote.

A restore path may be:

* a training run's output folder (``config.yml`` + ``tf_ckpts/``): its best checkpoint by test loss;
* a checkpoint folder (holding a ``checkpoint`` index file, e.g. ``RUN/tf_ckpts``): its latest entry;
* a checkpoint prefix (``RUN/tf_ckpts/ckpt-12``, the ``.index`` file beside it).

The config is the run's ``config.yml`` (found next to the checkpoint folder) unless one is given.
"""
from __future__ import annotations

import os
from typing import Optional

from core import import_tensorflow
from core.config import CONFIG_NAME, Config, load_config
from core.errors import UserError
from core.training import checkpoint_variables, resolve_checkpoint, restore_checkpoint

tf = import_tensorflow()


def restore_score_network(path: str | os.PathLike, config: Optional[Config] = None,
                          input_shape: Optional[tuple] = None, use_ema: bool = True):
    """Build the score network of a run and load its weights (the EMA weights when the run kept them).

    Args:
        path: a restore path (see the module docstring).
        config: the run's config; default: ``config.yml`` of the run folder.
        input_shape: (height, width, channels); default (config.height, config.width, 1).
        use_ema: load the exponential moving average of the weights when the checkpoint has one.
    Returns:
        (model, config): the model called as ``model([x, labels])``, and the config it was built from.
    Raises:
        UserError: no checkpoint, no config, or a checkpoint that does not fit the config.
    """
    from ncsn.networks import EMAWeights, build_score_network

    prefix, run = resolve_checkpoint(path)
    if config is None:
        config_path = run / CONFIG_NAME
        if not config_path.is_file():
            raise UserError(f"no config.yml in {run} next to the checkpoint; pass --config with the run's config")
        config = load_config(config_path, required=("n_filters",))
    shape = input_shape or (config.height, config.width, 1)
    model = build_score_network(config, shape)
    names = {name for name, _ in checkpoint_variables(prefix)}
    has_ema = any(name.startswith("ema/") for name in names)
    ema = EMAWeights(model, config.ema_rate) if has_ema else None
    checkpoint = tf.train.Checkpoint(model=model, **({"ema": ema} if ema is not None else {}))
    restore_checkpoint(checkpoint, prefix, f"a {config.version} network with {config.n_filters} filters and "
                       f"{config.num_classes} levels", "pass the config the run was trained with")
    if ema is not None and use_ema:
        ema.copy_to_model()
    return model, config
