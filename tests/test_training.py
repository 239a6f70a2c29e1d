"""The shared training loop: it optimises, checkpoints by best test loss, resumes, stops on divergence."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

from conftest import ROOT, run_script
from core.config import Config
from core.training import BEST_DIR, LATEST_DIR, Trainer, TrainingDiverged, make_optimizer, tf

import tf_keras as keras


def regression_data(n=256, seed=0):
    """y = 2 x + 1 + small noise: least squares has the analytic optimum w = 2, b = 1."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    y = (2 * x + 1 + 0.01 * rng.standard_normal((n, 1))).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(32)


def make_trainer(output, learning_rate=0.05, loss_scale=1.0):
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(1,))])
    optimizer = make_optimizer(Config(learning_rate=learning_rate, optimizer="adam"))

    def per_example_loss(batch, training):
        x, y = batch
        return loss_scale * tf.reduce_sum((model(x, training=training) - y) ** 2, axis=-1)

    return model, Trainer(model, per_example_loss, optimizer, output, global_batch_size=32)


def test_fit_reaches_the_least_squares_optimum_and_keeps_the_best(tmp_path):
    model, trainer = make_trainer(tmp_path)
    state = trainer.fit(regression_data(), regression_data(64, seed=1), n_epochs=40)
    w, b = (float(v.numpy().ravel()[0]) for v in model.weights)
    assert w == pytest.approx(2.0, abs=0.05) and b == pytest.approx(1.0, abs=0.05)
    assert state.epochs_done == 40 and state.best_test_loss < 1e-3
    assert (tmp_path / BEST_DIR / "checkpoint").is_file() and (tmp_path / LATEST_DIR / "checkpoint").is_file()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_rerun_resumes_from_the_latest_epoch(tmp_path):
    _, first = make_trainer(tmp_path)
    first.fit(regression_data(), regression_data(64, 1), n_epochs=3)
    model, second = make_trainer(tmp_path)
    assert second.restore() and int(second.epoch) == 3
    weights_after_restore = [v.numpy().copy() for v in model.weights]
    _, third = make_trainer(tmp_path)
    third.restore()
    np.testing.assert_array_equal(weights_after_restore[0], third.model.weights[0].numpy())
    state = second.fit(regression_data(), regression_data(64, 1), n_epochs=5)
    assert state.epochs_done == 5
    assert tf.train.latest_checkpoint(str(tmp_path / LATEST_DIR)).endswith("-5")
    done = make_trainer(tmp_path)[1].fit(regression_data(), regression_data(64, 1), n_epochs=5)
    assert done.epochs_done == 5  # nothing left to do


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path):
    _, good = make_trainer(tmp_path)
    good.fit(regression_data(), regression_data(64, 1), n_epochs=1)
    _, bad = make_trainer(tmp_path, loss_scale=float("nan"))
    with pytest.raises(TrainingDiverged, match="epoch 2: the train loss became nan at step 1.*lower --learning_rate"
                                               ".*--warmup_steps.*--clipnorm"):
        bad.fit(regression_data(), regression_data(64, 1), n_epochs=3)
    assert tf.train.latest_checkpoint(str(tmp_path / LATEST_DIR)).endswith("-1")


def test_spike_detection(tmp_path):
    _, trainer = make_trainer(tmp_path)
    trainer._check(1.0, previous_mean=1.0, epoch=2, step=3)
    with pytest.raises(TrainingDiverged, match="spiked to 50 at step 3"):
        trainer._check(50.0, previous_mean=1.0, epoch=2, step=3)


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpus_trains_the_same_model(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'tests')!r})
        import core
        tf = core.import_tensorflow()
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import tf_keras as keras
        from core.config import Config
        from core.training import Trainer, make_optimizer
        from test_training import regression_data
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = keras.Sequential([keras.layers.Dense(1, input_shape=(1,))])
            optimizer = make_optimizer(Config(learning_rate=0.05))
        def loss(batch, training):
            x, y = batch
            return tf.reduce_sum((model(x, training=training) - y) ** 2, axis=-1)
        trainer = Trainer(model, loss, optimizer, {str(tmp_path / 'run')!r}, strategy=strategy, global_batch_size=32)
        train = strategy.experimental_distribute_dataset(regression_data())
        test = strategy.experimental_distribute_dataset(regression_data(64, 1))
        state = trainer.fit(train, test, n_epochs=40)
        w, b = (float(v.numpy().ravel()[0]) for v in model.weights)
        print("REPLICAS", strategy.num_replicas_in_sync, "W", round(w, 2), "B", round(b, 2))
    """))
    proc = run_script(str(script))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "REPLICAS 2 W 2.0 B 1.0" in proc.stdout, proc.stdout


def test_l2_penalty_shrinks_the_weights_towards_the_ridge_solution(tmp_path):
    """With l2_reg the optimum is ridge regression, computed here in closed form on the same data."""
    x_all, y_all = (np.concatenate([b[i].numpy() for b in regression_data()]) for i in (0, 1))
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(1,))])
    optimizer = make_optimizer(Config(learning_rate=0.05))

    def loss(batch, training):
        x, y = batch
        return tf.reduce_sum((model(x, training=training) - y) ** 2, axis=-1)

    l2 = 0.5
    Trainer(model, loss, optimizer, tmp_path, global_batch_size=32, l2_reg=l2).fit(
        regression_data(), regression_data(64, 1), n_epochs=60)
    # minimise mean((w x + b - y)^2) + l2 (w^2 + b^2): (X^T X / n + l2 I) theta = X^T y / n
    design = np.hstack([x_all, np.ones_like(x_all)]).astype(np.float64)
    n = len(design)
    ridge = np.linalg.solve(design.T @ design / n + l2 * np.eye(2), design.T @ y_all[:, 0] / n)
    w, b = (float(v.numpy().ravel()[0]) for v in model.weights)
    np.testing.assert_allclose([w, b], ridge, atol=0.03)
    assert abs(w) < 1.5  # far from the unpenalised 2


def test_init_from_starts_a_new_run_from_trained_weights_and_resume_wins(tmp_path):
    from ncsn.networks import EMAWeights

    trained, first = make_trainer(tmp_path / "trained")
    first.fit(regression_data(), regression_data(64, 1), n_epochs=20)
    w_trained = [v.numpy().copy() for v in trained.weights]
    # a new run with a learning rate of 0: its weights are exactly the ones it started from
    model = keras.Sequential([keras.layers.Dense(1, input_shape=(1,))])
    model.build((None, 1))
    optimizer = make_optimizer(Config(learning_rate=0.0, optimizer="adam"))
    ema = EMAWeights(model, 0.5)
    trainer = Trainer(model, lambda batch, training: tf.reduce_sum((model(batch[0]) - batch[1]) ** 2, axis=-1),
                      optimizer, tmp_path / "tuned", global_batch_size=32, ema=ema)
    # (the run's latest checkpoint: the run folder itself would give its best epoch by test loss)
    state = trainer.fit(regression_data(), regression_data(64, 1), n_epochs=1,
                        init_from=str(tmp_path / "trained" / LATEST_DIR))
    assert state.epochs_done == 1                                   # epochs count from 0 in the new run
    for got, want in zip(model.weights, w_trained):
        np.testing.assert_array_equal(got.numpy(), want)
    for shadow, want in zip(ema.shadow, w_trained):                # the average starts at those weights too
        np.testing.assert_array_equal(shadow.numpy(), want)
    # with a checkpoint of its own, the run resumes from it and init_from is ignored
    model.weights[0].assign(model.weights[0] + 1.0)
    trainer.latest.save(checkpoint_number=1)
    _, again = make_trainer(tmp_path / "tuned")
    again.fit(regression_data(), regression_data(64, 1), n_epochs=1, init_from=str(tmp_path / "trained" / LATEST_DIR))
    np.testing.assert_array_equal(again.model.weights[0].numpy(), w_trained[0] + 1.0)
