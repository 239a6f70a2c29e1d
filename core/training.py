"""The one training loop of the suite, shared by every ``train_*.py``.

It knows nothing of models or data sources: a script hands it a model (any ``tf.Module``, e.g. a tf-keras model),
a per-example loss, an optimizer and the train/test datasets. It provides:

* a compiled train step run under a ``tf.distribute`` strategy (the default strategy on one device), with the
  per-example losses averaged over the *global* batch;
* learning-rate warm-up, gradient clipping (norm / value), an optional EMA of the weights (used for evaluation);
* a test loss per epoch, TensorBoard scalars (``OUTPUT/tensorboard``), a progress bar, ``out.log``;
* checkpoints: ``OUTPUT/tf_ckpts`` keeps the best checkpoint by test loss (what later scripts restore) and
  ``OUTPUT/tf_ckpts_latest`` the last finished epoch (what a re-run resumes from);
* a stop with a clear message on NaN/inf or a loss spike, keeping the last good checkpoints.

Run folder layout::

    OUTPUT/config.yml  out.log  tf_ckpts/  tf_ckpts_latest/  tensorboard/
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from pathlib import Path
from typing import Callable, Optional

from core import import_tensorflow
from core.config import CONFIG_NAME
from core.rundir import TENSORBOARD_DIR
from core.errors import UserError

tf = import_tensorflow()
import tf_keras as keras  # noqa: E402  (after TensorFlow, quietly imported)

BEST_DIR = "tf_ckpts"
LATEST_DIR = "tf_ckpts_latest"


class TrainingDiverged(UserError):
    """The loss became NaN/inf or spiked; the last good checkpoints are kept."""


def make_strategy(name: str = "default"):
    """A tf.distribute strategy by name: 'default' (one device), 'mirrored' (all local GPUs, or CPU),
    'multiworker' (several machines, configured through the TF_CONFIG environment variable)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        import json
        import os

        if "TF_CONFIG" not in os.environ:
            raise UserError("--strategy multiworker needs the TF_CONFIG environment variable (cluster and task); "
                            "see the README, 'Training a prior'")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as err:
            raise UserError(f"TF_CONFIG is not valid JSON ({err}); it must describe the cluster and this task") \
                from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UserError(f"unknown strategy {name!r}: use default, mirrored or multiworker")


class WarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate rising linearly from 0 to ``learning_rate`` over ``warmup_steps`` steps, then constant."""

    def __init__(self, learning_rate: float, warmup_steps: int):
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        fraction = (tf.cast(step, tf.float32) + 1.0) / float(max(self.warmup_steps, 1))
        return self.learning_rate * tf.minimum(1.0, fraction)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps}


def make_optimizer(config):
    """Adam or Adamax (config.optimizer) with warm-up and clipping from the config (tf-keras optimizers)."""
    kinds = {"adam": keras.optimizers.Adam, "adamax": keras.optimizers.Adamax}
    learning_rate = WarmUp(config.learning_rate, config.warmup_steps) if config.warmup_steps else config.learning_rate
    return kinds[config.optimizer](learning_rate=learning_rate,
                                   clipnorm=config.clipnorm, clipvalue=config.clipvalue)


@dataclasses.dataclass
class TrainState:
    """What fit() returns: epochs done, best test loss, and the checkpoint paths."""

    epochs_done: int
    best_test_loss: float
    best_checkpoint: Optional[str]
    latest_checkpoint: Optional[str]


class Trainer:
    """Trains ``model`` by minimising the mean of ``per_example_loss`` over the data.

    Args:
        model: the tf.Module whose ``trainable_variables`` are optimised (built under ``strategy.scope()``).
        per_example_loss: ``f(batch, training) -> (batch,)`` float32 losses, called inside the replica context.
        optimizer: a tf-keras optimizer (see :func:`make_optimizer`), created under ``strategy.scope()``.
        output: the run folder.
        strategy: the tf.distribute strategy the model, optimizer and datasets were made with.
        global_batch_size: the batch size over all replicas (for averaging the losses).
        ema: optional object with ``update()`` (after each step) and ``swapped()`` (a context manager that puts the
            averaged weights in place); it must be trackable by tf.train.Checkpoint.
        metrics: optional ``f(mean_loss) -> {name: value}`` of extra numbers logged per epoch (e.g. bits/dim).
        on_epoch_end: optional ``f(epoch, summary_writer)`` called after each epoch (e.g. sample grids).
        spike_factor: a train loss above ``mean + spike_factor * |mean|`` of the previous epoch stops training.
        l2_reg: adds ``l2_reg * sum(w^2)`` over the trainable weights to the optimised loss (not to the logged one).
        logger: where progress lines go.
        random_state: optional {name: trackable} kept in the checkpoints with the model, e.g. the
            ``tf.random.Generator`` of the loss's noise, so that a resumed run draws what an uninterrupted one would.
    """

    def __init__(self, model, per_example_loss: Callable, optimizer, output: str | Path, strategy=None,
                 global_batch_size: int = 32, ema=None, metrics: Optional[Callable] = None,
                 on_epoch_end: Optional[Callable] = None, spike_factor: float = 10.0, l2_reg: float = 0.0,
                 logger: Optional[logging.Logger] = None, random_state: Optional[dict] = None):
        self.model = model
        self.per_example_loss = per_example_loss
        self.optimizer = optimizer
        self.output = Path(output)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.global_batch_size = global_batch_size
        self.ema = ema
        self.metrics = metrics or (lambda loss: {})
        self.on_epoch_end = on_epoch_end
        self.spike_factor = spike_factor
        self.l2_reg = float(l2_reg)
        self.logger = logger or logging.getLogger("sepsuite")
        # host-side counters (outside the strategy's scope: read and written only between steps)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best_test_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_test_loss")
        tracked = dict(model=model, optimizer=optimizer, epoch=self.epoch, best_test_loss=self.best_test_loss)
        if ema is not None:
            tracked["ema"] = ema
        tracked.update(random_state or {})  # absent from older checkpoints: those resume with a fresh state
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self.latest = tf.train.CheckpointManager(self.checkpoint, str(self.output / LATEST_DIR), max_to_keep=2)
        self.best = tf.train.CheckpointManager(self.checkpoint, str(self.output / BEST_DIR), max_to_keep=1)
        if model.trainable_variables:
            # the optimizer's slots made now, not in the first step: the step is traced once instead of twice
            with self.strategy.scope():
                optimizer.build(model.trainable_variables)
        # the steps have no data-dependent Python control flow: tracing without AutoGraph is a third faster
        self._train_step = tf.function(self._distributed_train_step, autograph=False)
        self._test_step = tf.function(self._distributed_test_step, autograph=False)

    # ------------------------------------------------------------------------------------------- compiled steps
    def _replica_train_step(self, batch):
        with tf.GradientTape() as tape:
            losses = self.per_example_loss(batch, True)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=self.global_batch_size)
            regularisation = list(getattr(self.model, "losses", []))
            if self.l2_reg > 0:
                regularisation.append(self.l2_reg * tf.add_n([tf.reduce_sum(tf.square(v))
                                                              for v in self.model.trainable_variables]))
            if regularisation:
                loss += tf.nn.scale_regularization_loss(tf.add_n(regularisation))
        variables = self.model.trainable_variables
        gradients = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        if self.ema is not None:
            self.ema.update()
        return tf.reduce_sum(losses), tf.cast(tf.shape(losses)[0], tf.float32)

    def _distributed_train_step(self, batch):
        total, count = self.strategy.run(self._replica_train_step, args=(batch,))
        reduce = tf.distribute.ReduceOp.SUM
        return self.strategy.reduce(reduce, total, axis=None), self.strategy.reduce(reduce, count, axis=None)

    def _replica_test_step(self, batch):
        losses = self.per_example_loss(batch, False)
        return tf.reduce_sum(losses), tf.cast(tf.shape(losses)[0], tf.float32)

    def _distributed_test_step(self, batch):
        total, count = self.strategy.run(self._replica_test_step, args=(batch,))
        reduce = tf.distribute.ReduceOp.SUM
        return self.strategy.reduce(reduce, total, axis=None), self.strategy.reduce(reduce, count, axis=None)

    # ------------------------------------------------------------------------------------------------ the loop
    def restore(self) -> bool:
        """Restore the latest checkpoint of the run folder if there is one; returns whether it did."""
        if self.latest.latest_checkpoint is None:
            return False
        restore_checkpoint(self.checkpoint, self.latest.latest_checkpoint, "this run's model and optimizer",
                           "train into a new --output folder", match=False,
                           recover="train into a new --output folder (the damaged run folder can be deleted)")
        return True

    def evaluate(self, dataset) -> float:
        """Mean per-example loss over a (distributed) dataset, with the EMA weights when there are any."""
        def run():
            total = count = 0.0
            for batch in dataset:
                batch_total, batch_count = self._test_step(batch)
                total += float(batch_total)
                count += float(batch_count)
            return total / max(count, 1.0)

        if self.ema is not None:
            with self.ema.swapped():
                return run()
        return run()

    def fit(self, train, test, n_epochs: int, steps_per_epoch: Optional[int] = None,
            init_from: Optional[str] = None, config=None, architecture_keys: tuple = ()) -> TrainState:
        """Train until ``n_epochs`` epochs are done in total, resuming from the run folder's latest checkpoint.

        Args:
            train, test: (distributed) datasets of batches; ``train`` is iterated once per epoch.
            n_epochs: total epochs of the run (a resumed run does only the missing ones).
            steps_per_epoch: length of an epoch for the progress bar (None: unknown).
            init_from: a checkpoint (run folder, checkpoint folder or prefix; see :func:`resolve_checkpoint`)
                whose model weights start a NEW run (fine-tuning: epochs and optimizer start afresh, the EMA starts
                at those weights); ignored when the run folder has a checkpoint to resume from.
            config, architecture_keys: checked against ``init_from``'s config.yml (see
                :func:`restore_model_weights`).
        Raises:
            TrainingDiverged: NaN/inf or a spike in the loss (the last good checkpoints stay on disk).
        """
        from tqdm import tqdm

        resumed = self.restore()
        if resumed:
            self.logger.info("resumed from %s (epoch %d done, best test loss %.4f)", self.latest.latest_checkpoint,
                             int(self.epoch), float(self.best_test_loss))
        elif init_from is not None:
            prefix = restore_model_weights(self.model, init_from, config, architecture_keys)
            if self.ema is not None:
                self.ema.reset()
            self.logger.info("fine-tuning: model weights from %s", prefix)
        if int(self.epoch) >= n_epochs:
            self.logger.info("all %d epochs are already done in %s; raise --n_epochs to train further",
                             n_epochs, self.output)
            return self._state()
        if resumed:  # replay the done epochs' input pipeline (no training: a pass over the data is seconds), so
            for _ in range(int(self.epoch)):  # its random state (reshuffled order, augmentation draws) is where an
                for _ in train:               # uninterrupted run's would be
                    pass
        writer = tf.summary.create_file_writer(str(self.output / TENSORBOARD_DIR))
        previous_mean: Optional[float] = None
        for epoch in range(int(self.epoch) + 1, n_epochs + 1):
            start = time.perf_counter()
            total = count = 0.0
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{n_epochs}", unit="step", leave=False,
                       disable=None)
            for step, batch in enumerate(train, start=1):
                batch_total, batch_count = self._train_step(batch)
                batch_loss = float(batch_total) / max(float(batch_count), 1.0)
                self._check(batch_loss, previous_mean, epoch, step)
                total += float(batch_total)
                count += float(batch_count)
                bar.update(1)
                bar.set_postfix(loss=f"{batch_loss:.4g}")
            bar.close()
            train_loss = total / max(count, 1.0)
            test_loss = self.evaluate(test)
            if not math.isfinite(test_loss):
                raise TrainingDiverged(self._diverged_message(epoch, f"the test loss is {test_loss}"))
            self.epoch.assign(epoch)
            improved = test_loss < float(self.best_test_loss)
            if improved:
                self.best_test_loss.assign(test_loss)
            self.latest.save(checkpoint_number=epoch)
            if improved:
                self.best.save(checkpoint_number=epoch)
            with writer.as_default(step=epoch):
                tf.summary.scalar("loss/train", train_loss)
                tf.summary.scalar("loss/test", test_loss)
                for name, value in {**_prefixed(self.metrics(train_loss), "train"),
                                    **_prefixed(self.metrics(test_loss), "test")}.items():
                    tf.summary.scalar(name, value)
                if self.on_epoch_end is not None:
                    self.on_epoch_end(epoch, writer)
            writer.flush()
            extra = "".join(f", {k} {v:.4f}" for k, v in _prefixed(self.metrics(test_loss), "test").items())
            self.logger.info("epoch %d/%d: train loss %.4f, test loss %.4f%s%s (%.0f s)", epoch, n_epochs,
                             train_loss, test_loss, extra, " (best)" if improved else "",
                             time.perf_counter() - start)
            previous_mean = train_loss
        return self._state()

    def _check(self, loss: float, previous_mean: Optional[float], epoch: int, step: int) -> None:
        if not math.isfinite(loss):
            raise TrainingDiverged(self._diverged_message(epoch, f"the train loss became {loss} at step {step}"))
        if previous_mean is not None and self.spike_factor > 0 and \
                loss - previous_mean > self.spike_factor * max(abs(previous_mean), 1e-6):
            raise TrainingDiverged(self._diverged_message(
                epoch, f"the train loss spiked to {loss:.4g} at step {step} (last epoch's mean {previous_mean:.4g})"))

    def _diverged_message(self, epoch: int, what: str) -> str:
        kept = self.latest.latest_checkpoint or "none yet"
        return (f"training stopped in epoch {epoch}: {what}; the last good checkpoint is kept ({kept}). Remedies: "
                "a lower --learning_rate, a longer --warmup_steps, --clipnorm 1.0 (re-running resumes from it)")

    def _state(self) -> TrainState:
        return TrainState(int(self.epoch), float(self.best_test_loss), self.best.latest_checkpoint,
                          self.latest.latest_checkpoint)


def resolve_checkpoint(path: str | Path) -> tuple[str, Path]:
    """The checkpoint prefix a restore path points at, and the run folder it belongs to.

    A restore path is a run folder (its best checkpoint, ``RUN/tf_ckpts``), a checkpoint folder (holding a
    ``checkpoint`` index file: its latest entry) or a checkpoint prefix (``RUN/tf_ckpts/ckpt-12``).

    Raises:
        UserError: nothing restorable there.
    """
    path = Path(path)
    if path.is_dir() and (path / BEST_DIR / "checkpoint").is_file():
        prefix, run = tf.train.latest_checkpoint(str(path / BEST_DIR)), path
    elif path.is_dir() and (path / "checkpoint").is_file():
        prefix, run = tf.train.latest_checkpoint(str(path)), path.parent
    elif Path(str(path) + ".index").is_file():
        prefix, run = str(path), path.parent.parent
    else:
        raise UserError(f"no checkpoint at {path}: give a training run's --output folder, its {BEST_DIR} folder, "
                        f"or a checkpoint prefix such as RUN/{BEST_DIR}/ckpt-12")
    if prefix is None:
        raise UserError(f"the checkpoint index in {path} names no checkpoint that exists; was the run deleted?")
    return prefix, run


def check_trained_config(path, run: Path, config, keys: tuple) -> None:
    """Compare ``keys`` of ``config`` with the ``config.yml`` of the run folder ``run`` (if it has one).

    Raises:
        UserError: a key differs; the message names the restore path and both values.
    """
    if not (Path(run) / CONFIG_NAME).is_file():
        return
    from core.config import load_config

    trained = load_config(Path(run) / CONFIG_NAME)
    for key in keys:
        if getattr(trained, key) != getattr(config, key):
            raise UserError(f"{path} was trained with {key}={getattr(trained, key)}, the config says "
                            f"{key}={getattr(config, key)}; use the config it was trained with")


def restore_model_weights(model, path: str | Path, config=None, architecture_keys: tuple = ()) -> str:
    """Load the model weights of a training checkpoint into ``model`` (already built); returns the prefix used.

    Args:
        config: the config the model was built from; with ``architecture_keys``, compared with the ``config.yml``
            of the checkpoint's run folder (when there is one) so that a mismatch names both values.
    Raises:
        UserError: no checkpoint, an architecture key that differs, or weights that do not fit the model.
    """
    prefix, run = resolve_checkpoint(path)
    if config is not None:
        check_trained_config(path, run, config, architecture_keys)
    restore_checkpoint(tf.train.Checkpoint(model=model), prefix, "this model", "use the config it was trained with")
    return prefix


def _first_line(err: BaseException) -> str:
    """The first line of an error's message, without TensorFlow's ``{{function_node ...}}`` prefix."""
    text = str(getattr(err, "message", None) or err).strip()
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)
    return (text.splitlines()[0] if text else type(err).__name__)[:320]


#: what to do about a damaged checkpoint, unless the caller knows better
RECOVER = ("restore them from where they came from (e.g. 'git checkout -- pretrained' for the shipped priors), or "
           "delete that checkpoint and train again")


def _unreadable(prefix: str, err: BaseException, recover: str) -> UserError:
    return UserError(f"checkpoint {prefix} cannot be read: its files are truncated or corrupt ({_first_line(err)}); "
                     f"{recover}")


def checkpoint_variables(prefix: str, recover: str = RECOVER) -> list[tuple[str, list[int]]]:
    """(name, shape) of every variable stored at a checkpoint ``prefix`` (``tf.train.list_variables``).

    Raises:
        UserError: the checkpoint's files are truncated or corrupt (the message ends with ``recover``).
    """
    try:
        return tf.train.list_variables(prefix)
    except (IndexError, ValueError, tf.errors.OpError) as err:
        raise _unreadable(prefix, err, recover) from None


def restore_checkpoint(checkpoint, prefix: str, model_description: str, fix: str, match: bool = True,
                       recover: str = RECOVER) -> None:
    """``checkpoint.restore(prefix)`` (a ``tf.train.Checkpoint``), with one-line errors.

    Args:
        model_description: what the checkpoint should fit, for the message (e.g. "a v1 network with 16 filters").
        fix: what to do when it does not fit (e.g. "pass the config the run was trained with").
        match: also check that every object of ``checkpoint`` found its values.
        recover: what to do when its files are damaged.
    Raises:
        UserError: truncated or corrupt files (the message names the checkpoint and ``recover``), or a
            checkpoint that does not fit ``model_description`` (the message ends with ``fix``).
    """
    checkpoint_variables(prefix, recover)  # reads the index and the data files' headers: truncation shows here
    try:
        status = checkpoint.restore(prefix).expect_partial()
        if match:
            status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as err:
        raise UserError(f"checkpoint {prefix} does not fit {model_description} ({_first_line(err)}); {fix}") \
            from None
    except (IndexError, tf.errors.OpError) as err:  # a data file cut short or with flipped bytes
        raise _unreadable(prefix, err, recover) from None


def _prefixed(values: dict, split: str) -> dict:
    return {f"{name}/{split}": value for name, value in values.items()}
