"""Shared fixtures: small synthetic audio and datasets made on the fly (nothing is downloaded)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SR = 16000


def music_like(seconds: float, seed: int = 0, f0: float = 220.0, sr: int = SR) -> np.ndarray:
    """A deterministic harmonic signal with note envelopes and a little noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    audio = np.zeros(n)
    note = int(0.25 * sr)
    for start in range(0, n, note):
        freq = f0 * 2 ** (rng.integers(0, 12) / 12)
        seg = t[start:start + note] - t[start]
        envelope = np.exp(-3.0 * seg)
        for harmonic in range(1, 5):
            audio[start:start + note] += envelope * np.sin(2 * np.pi * freq * harmonic * seg) / harmonic
    audio += 0.01 * rng.standard_normal(n)
    return (0.3 * audio / np.abs(audio).max()).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, sr: int = SR, subtype: str = "FLOAT") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, sr, subtype=subtype)
    return path


def run_script(*args: str, cwd: Path = ROOT, timeout: int = 300,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a script of the suite with this interpreter; returns the completed process (text output).
    ``env``: variables to set on top of this process's environment."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore", **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """The process failed with a one-line `error: ...` on stderr (no traceback) containing every fragment."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_collection_modifyitems(config, items):
    """Tests that run a script of the suite as a user would (through :func:`run_script`) are marked ``script``
    (``-m script`` runs only those, ``-m "not script"`` only the in-process ones). The tests marked slow (a minute
    or more: scripts that train or separate) run first, so that the two xdist workers (pytest.ini), which take one
    test at a time, finish together instead of one waiting on a long test."""
    import inspect

    for item in items:
        function = getattr(item, "function", None)
        if function is not None and "run_script(" in inspect.getsource(function):
            item.add_marker(pytest.mark.script)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Global SDR in dB: 10 log10(|s|^2 / |s - s_hat|^2)."""
    reference, estimate = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((reference - estimate) ** 2)))


# --------------------------------------------------------------------------- flows (tests of flow_models)
def perturb(module, seed: int, scale: float = 0.2):
    """Move every trainable weight away from its (often identity) initial value."""
    rng = np.random.default_rng(seed)
    for variable in module.trainable_variables:
        variable.assign_add(scale * rng.standard_normal(variable.shape).astype(np.float32))


def random_input(shape, seed: int):
    """A float32 tensor of standard normal values."""
    from core import import_tensorflow

    return import_tensorflow().constant(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def brute_force_logdet(function, x):
    """log|det J| (float64) of function: (1, h, w, c) -> any shape with h*w*c entries, by autodiff."""
    from core import import_tensorflow

    tf = import_tensorflow()
    x_flat = tf.reshape(x, [-1])
    with tf.GradientTape() as tape:
        tape.watch(x_flat)
        y = function(tf.reshape(x_flat, x.shape))
        y_flat = tf.reshape(y, [-1])
    jacobian = tape.jacobian(y_flat, x_flat).numpy().astype(np.float64)
    assert jacobian.shape == (x_flat.shape[0],) * 2
    sign, logdet = np.linalg.slogdet(jacobian)
    assert sign != 0
    return logdet


def digits_bits_per_dim(kind: str, steps: int = 400, L: int = 2, K: int = 2, n_filters: int = 16):
    """A tiny flow of ``kind`` trained ``steps`` Adam steps on scikit-learn's 8x8 digits (offline), dequantised to
    [-0.5, 0.5]: (untrained, per-pixel Gaussian fit, trained) test bits/dim."""
    import scipy.stats
    import tf_keras as keras
    from sklearn.datasets import load_digits

    from core import import_tensorflow
    from core.config import Config
    from flow_models.glow import build_flow

    tf = import_tensorflow()
    rng = np.random.default_rng(0)
    pixels = load_digits().images.astype(np.float32)[..., None]  # (1797, 8, 8, 1), values 0..16
    data = ((pixels + rng.uniform(size=pixels.shape)) / 17.0 - 0.5).astype(np.float32)
    train, test = data[:1500], data[1500:]
    gaussian = scipy.stats.norm(train.mean(axis=0), train.std(axis=0))
    gaussian_bpd = -gaussian.logpdf(test).reshape(len(test), -1).mean() / np.log(2)

    flow = build_flow(Config(L=L, K=K, n_filters=n_filters), (8, 8, 1), kind=kind)
    flow.initialize(tf.constant(train[:256]))
    untrained = float(tf.reduce_mean(flow.bits_per_dim(tf.constant(test))))
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(flow.bits_per_dim(batch))
        optimizer.apply_gradients(zip(tape.gradient(loss, flow.trainable_variables), flow.trainable_variables))
        return loss

    for _ in range(steps):
        step(tf.constant(train[rng.integers(0, len(train), 64)]))
    return untrained, gaussian_bpd, float(tf.reduce_mean(flow.bits_per_dim(tf.constant(test))))
