"""BASIS (separation/basis.py): mixing models, the posterior it samples, reproducibility, resuming, NaN handling.

The posterior test uses Gaussian priors whose scores are exact and the mean mixing model: the posterior is Gaussian
and known in closed form (a 2x2 linear system per pixel), independent of the code under test.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from core import import_tensorflow
from datasets import midi_dataset as md
from datasets.data_loader import load_song
from core.spectral import SpectrogramParams
from datasets.preprocessing import to_unit
from core.errors import UserError
from ncsn.sampling import SamplingDiverged
from separation import basis as bs

tf = import_tensorflow()
PARAMS = SpectrogramParams()
HAVE_FLUIDSYNTH = shutil.which("fluidsynth") is not None and Path(md.DEFAULT_SOUNDFONT).is_file()


# ------------------------------------------------------------------------------------------------ mixing models

@pytest.mark.parametrize("amplitude", [False, True])
@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_db_mixing_gradient_equals_autodiff_and_works_in_db_units(amplitude, offset):
    rng = np.random.default_rng(0)
    sources = tf.constant(rng.uniform(0.1, 0.95, (3, 2, 5, 4, 1)) - offset, tf.float32)
    model = bs.DecibelMixing(PARAMS, offset=offset, amplitude=amplitude)
    with tf.GradientTape() as tape:
        tape.watch(sources)
        total = tf.reduce_sum(model(sources))  # g is element-wise: the gradient of the sum is dg/ds_k per element
    np.testing.assert_allclose(model.gradient(sources).numpy(), tape.gradient(total, sources).numpy(), atol=1e-6)

    # the value, computed independently in dB with numpy: 10 log10(sum 10^(d/10)) (20 and 20 for amplitudes)
    c = 20.0 if amplitude else 10.0
    decibels = PARAMS.db_min + (PARAMS.db_max - PARAMS.db_min) * (sources.numpy().astype(np.float64) + offset)
    expected_db = c * np.log10(np.sum(10.0 ** (decibels / c), axis=0))
    expected = (expected_db - PARAMS.db_min) / (PARAMS.db_max - PARAMS.db_min) - offset
    np.testing.assert_allclose(model(sources).numpy(), expected, atol=2e-6)
    # two equal sources in power: +3.01 dB; in amplitude: +6.02 dB
    equal = tf.fill((2, 1), (-20.0 - PARAMS.db_min) / (PARAMS.db_max - PARAMS.db_min) - offset)
    gain_db = (model(equal).numpy()[0] - equal.numpy()[0, 0]) * (PARAMS.db_max - PARAMS.db_min)
    assert gain_db == pytest.approx(c * np.log10(2.0), abs=1e-3)


def test_mean_and_sum_mixing_gradients():
    sources = tf.constant(np.random.default_rng(1).normal(size=(3, 4, 2)), tf.float32)
    for model, value, gradient in ((bs.MeanMixing(), sources.numpy().mean(0), 1 / 3),
                                   (bs.SumMixing(0.5), sources.numpy().sum(0) + 1.0, 1.0)):
        np.testing.assert_allclose(model(sources).numpy(), value, atol=1e-6)
        with tf.GradientTape() as tape:
            tape.watch(sources)
            total = tf.reduce_sum(model(sources))
        np.testing.assert_allclose(tape.gradient(total, sources).numpy(), gradient, atol=1e-6)
        np.testing.assert_allclose(model.gradient(sources).numpy(), gradient, atol=1e-6)


def test_make_mixing_model_rejects_what_does_not_fit():
    assert isinstance(bs.make_mixing_model("power_sum", PARAMS, scale="power"), bs.SumMixing)
    with pytest.raises(Exception, match="needs dB spectrograms"):
        bs.make_mixing_model("amplitude_sum", PARAMS, scale="power")
    with pytest.raises(Exception, match="unknown mixing model"):
        bs.make_mixing_model("product")


@pytest.mark.skipif(not HAVE_FLUIDSYNTH, reason="needs: apt-get install fluidsynth fluid-soundfont-gm")
def test_power_sum_in_db_matches_real_piano_violin_mixtures(tmp_path):
    """A chorale rendered for real: the mixture's dB mel is close to g(piano, violin) (the seed's minute: 0.77 dB)."""
    piece = md.find_corpus_pieces(["bach/bwv165.6"])[0]
    record = md.build_piece(piece, str(tmp_path), md.RenderOptions(max_piece_minutes=0.25))
    assert record["status"] == "ok", record
    song = load_song(md.song_dir(tmp_path, record["split"], record["name"]), ("piano", "violin"), PARAMS)
    valid = 1 + (song.n_samples - (song.n_segments - 1) * PARAMS.segment_samples) // PARAMS.hop_length
    unit = {name: to_unit(mel, "dB", PARAMS) for name, mel in song.sources_mel.items()}
    model = bs.DecibelMixing(PARAMS)
    estimate = model(tf.constant(np.stack([unit["piano"], unit["violin"]]), tf.float32)).numpy()
    error_db = np.abs(estimate - to_unit(song.mix_mel, "dB", PARAMS)) * (PARAMS.db_max - PARAMS.db_min)
    error_db = np.concatenate([error_db[:-1].reshape(-1), error_db[-1, :, :valid].reshape(-1)])  # no padding
    assert error_db.mean() < 1.0, error_db.mean()
    # the unit error the seed made (the sum law applied to the [0, 1]-scaled numbers) is far worse
    wrong = 10 * np.log10(10 ** (unit["piano"] / 10) + 10 ** (unit["violin"] / 10))
    wrong_db = np.abs(wrong - to_unit(song.mix_mel, "dB", PARAMS)) * (PARAMS.db_max - PARAMS.db_min)
    assert wrong_db.mean() > 3 * error_db.mean()


# ----------------------------------------------------------------------------------------- Gaussian posterior

MU, STD, X = np.array([0.2, 0.6]), np.array([0.2, 0.1]), 0.3


def gaussian_priors():
    def prior(k):
        def score(x, level):
            sigma = tf.gather(SIGMAS_T, level)
            return -(x - MU[k]) / (STD[k] ** 2 + sigma ** 2)
        return bs.FunctionPrior(score)
    return [prior(0), prior(1)]


SIGMAS = np.geomspace(0.5, 0.05, 4).astype(np.float32)
SIGMAS_T = tf.constant(SIGMAS)


def test_samples_match_the_closed_form_gaussian_posterior():
    """Last level: p(s) ∝ N(s1; mu1, std1^2 + sL^2) N(s2; mu2, std2^2 + sL^2) N(x; (s1 + s2) / 2, sL^2)."""
    sigma = float(SIGMAS[-1])
    delta, steps = 2e-4, 2000
    basis = bs.Basis(gaussian_priors(), bs.MeanMixing(), SIGMAS, steps, delta)
    mixture = tf.fill((16, 16, 16, 1), X)
    estimates = basis.separate(mixture, bs.initial_sources((2, 16, 16, 16, 1), 3), seed=4).numpy()
    samples = estimates.reshape(2, -1)  # 4096 independent chains per source

    variances = STD ** 2 + sigma ** 2
    precision = np.diag(1 / variances) + np.full((2, 2), 0.25) / sigma ** 2
    covariance = np.linalg.inv(precision)
    mean = covariance @ (MU / variances + 0.5 * X / sigma ** 2)
    # the Langevin step (eta * largest precision = 0.045) biases the variances by < 2.5 %; sampling error ~ 2 %
    standard_errors = np.sqrt(np.diag(covariance) / samples.shape[1])
    assert np.all(np.abs(samples.mean(axis=1) - mean) < 4 * standard_errors), (samples.mean(axis=1), mean)
    np.testing.assert_allclose(samples.var(axis=1), np.diag(covariance), rtol=0.1)
    correlation = np.corrcoef(samples)[0, 1]
    expected = covariance[0, 1] / np.sqrt(covariance[0, 0] * covariance[1, 1])
    assert correlation == pytest.approx(expected, abs=0.05)  # strongly negative: the mixture ties the sources


# --------------------------------------------------------------------- reproducible, traced once, resumable

def counting_priors(calls):
    def score(x, level):
        calls.append(1)  # runs while tracing only
        return -(x - 0.5) / (0.04 + tf.gather(SIGMAS_T, level) ** 2)
    prior = bs.FunctionPrior(score)
    return [prior, prior]


def test_runs_are_reproducible_and_traced_once():
    calls = []
    basis = bs.Basis(counting_priors(calls), bs.DecibelMixing(PARAMS), SIGMAS, 7, 2e-5)
    mixture = tf.random.stateless_uniform((3, 6, 5, 1), seed=[0, 1])
    init = bs.initial_sources((2, 3, 6, 5, 1), 0)
    first = basis.separate(mixture, init, seed=5).numpy()
    pieces = init
    for level in range(len(SIGMAS)):  # the same levels in uneven pieces give the same numbers
        for start, count in ((0, 3), (3, 1), (4, 3)):
            pieces = basis.run_level(pieces, mixture, level, 5, start, count)
    np.testing.assert_array_equal(pieces.numpy(), first)
    assert not np.array_equal(basis.separate(mixture, init, seed=6).numpy(), first)
    assert basis.tracing_count == 1
    assert np.all(np.isfinite(first))


def test_separate_in_batches_resumes_after_an_interruption(tmp_path):
    basis = bs.Basis(counting_priors([]), bs.MeanMixing(), SIGMAS, 6, 1e-4)
    mixture = np.random.default_rng(0).uniform(size=(5, 4, 4, 1)).astype(np.float32)
    full, history = bs.separate_in_batches(basis, mixture, seed=3, batch_size=2, chunk_steps=4)
    assert full.shape == (2, 5, 4, 4, 1) and history.shape == (4, 2, 5, 4, 4, 1)
    np.testing.assert_array_equal(history[-1], full)

    class Interrupt:
        done = 0

        def update(self, n):
            self.done += n
            if self.done > 2 * 3 * 6 + 5:  # in the middle of level 3 (3 batches of 6 steps per level)
                raise KeyboardInterrupt

    state = tmp_path / "state.npz"
    with pytest.raises(KeyboardInterrupt):
        bs.separate_in_batches(basis, mixture, 3, 2, state_path=state, fingerprint="a", progress=Interrupt(),
                               chunk_steps=4)
    with np.load(state) as saved:
        assert int(saved["levels_done"]) == 2
    resumed, resumed_history = bs.separate_in_batches(basis, mixture, 3, 2, state_path=state, fingerprint="a",
                                                      chunk_steps=4)
    np.testing.assert_array_equal(resumed, full)
    np.testing.assert_array_equal(resumed_history, history)
    with pytest.raises(Exception, match="other settings"):
        bs.separate_in_batches(basis, mixture, 3, 2, state_path=state, fingerprint="b")


def test_nan_stops_naming_the_level_and_step_and_keeps_finished_levels(tmp_path):
    def exploding(x, level):  # finite for the first two levels, then NaN from step 1 of level 3
        return tf.where(level >= 2, tf.fill(tf.shape(x), np.nan), -x)
    prior = bs.FunctionPrior(exploding)
    basis = bs.Basis([prior, prior], bs.MeanMixing(), SIGMAS, 5, 1e-4)
    state = tmp_path / "state.npz"
    message = re.escape("noise level 3/4 (sigma 0.1077), step 1/5")
    with pytest.raises(SamplingDiverged, match=message + r".*batch 1/1.*kept in"):
        bs.separate_in_batches(basis, np.zeros((2, 3, 3, 1), np.float32), 0, 4, state_path=state, fingerprint="x")
    with np.load(state) as saved:
        assert saved["history"].shape[0] == 2 and np.all(np.isfinite(saved["history"]))


def test_psnr_takes_the_better_source_order():
    rng = np.random.default_rng(0)
    references = rng.uniform(size=(2, 3, 4, 4, 1))
    estimates = references.copy()
    estimates[:, 1] = references[::-1, 1]  # pair 1 estimated in swapped order
    estimates += 0.01  # MSE 1e-4: 40 dB
    values, swapped = bs.best_permutation_psnr(estimates, references)
    np.testing.assert_allclose(values, 40.0, atol=1e-9)
    assert swapped.tolist() == [False, True, False]


def test_priors_in_logit_units_are_refused_with_one_line(tmp_path):
    """BASIS's mixing models work on [0, 1] (or centred) units: a logit config or prior is an error, not silent."""
    import dataclasses

    from conftest import ROOT
    from core.config import load_config, save_config
    from core.errors import UserError
    from separation.priors import load_priors

    shipped = ROOT / "pretrained" / "piano"
    config = load_config(shipped / "config.yml")
    with pytest.raises(UserError, match="use_logit: true"):
        load_priors("ncsn", [shipped], dataclasses.replace(config, use_logit=True, alpha=0.05), (96, 64, 1), None)
    logit_prior = tmp_path / "logit_piano"
    shutil.copytree(shipped, logit_prior)
    save_config(dataclasses.replace(config, use_logit=True, alpha=0.05), logit_prior / "config.yml")
    with pytest.raises(UserError, match="trained with use_logit: true"):
        load_priors("ncsn", [logit_prior], config, (96, 64, 1), None)


# ------------------------------------------------------------------------------------------ sampler options

FIXTURES = Path(__file__).parent / "fixtures"


def test_default_options_give_the_numbers_of_basis_before_they_existed():
    """The new keys default to the original algorithm: bit-identical to the code of commit 7ff05dd (the fixture was
    made with that code, tests/fixtures/make_basis_before_sampler_options.py)."""
    with np.load(FIXTURES / "basis_before_sampler_options.npz") as ref:
        mixture, estimates, history = ref["mixture"], ref["estimates"], ref["history"]

    def prior(mu):
        return bs.FunctionPrior(lambda x, level: -(x - mu) / (0.04 + tf.gather(SIGMAS_T, level) ** 2))
    basis = bs.Basis([prior(0.3), prior(0.6)], bs.DecibelMixing(PARAMS), SIGMAS, 6, 2e-5)
    new, new_history = bs.separate_in_batches(basis, mixture, seed=11, batch_size=2, chunk_steps=4)
    np.testing.assert_array_equal(new, estimates)
    np.testing.assert_array_equal(new_history, history)
    assert basis.evaluations == 4 * 6


@pytest.mark.parametrize("n_chains, temperature", [(1, 1.0), (4, 1.0), (1, 0.25)])
def test_posterior_mean_of_n_chains_has_the_closed_form_mean_and_variance_over_n(n_chains, temperature):
    """Gaussian priors, mean mixing: each chain samples the posterior (closed form, as above); the mean of n
    independent chains is centred on the posterior mean with 1/n of its variance; at temperature tau a chain
    samples p^(1/tau), a Gaussian with tau times the variance."""
    sigma = float(SIGMAS[-1])
    variances = STD ** 2 + sigma ** 2
    precision = np.diag(1 / variances) + np.full((2, 2), 0.25) / sigma ** 2
    covariance = np.linalg.inv(precision)
    mean = covariance @ (MU / variances + 0.5 * X / sigma ** 2)
    mixture = tf.fill((8, 16, 16, 1), X)
    basis = bs.Basis(gaussian_priors(), bs.MeanMixing(), SIGMAS, 1500, 2e-4, n_chains=n_chains,
                     temperature=temperature)
    assert basis.start(mixture, 3).shape == (2, 8 * n_chains, 16, 16, 1)
    estimates = basis.separate(mixture, basis.start(mixture, 3), seed=4).numpy()
    assert estimates.shape == (2, 8, 16, 16, 1)
    samples = estimates.reshape(2, -1)  # 2048 independent estimates per source
    expected = np.diag(covariance) * temperature / n_chains
    assert np.all(np.abs(samples.mean(axis=1) - mean) < 4 * np.sqrt(expected / samples.shape[1])), samples.mean(1)
    # sampling error of a variance from 2048 draws: 3 %; the Langevin step's bias: < 2.5 %
    np.testing.assert_allclose(samples.var(axis=1), expected, rtol=0.1)


@pytest.mark.parametrize("model", [bs.DecibelMixing(PARAMS), bs.DecibelMixing(PARAMS, offset=0.5),
                                   bs.DecibelMixing(PARAMS, amplitude=True), bs.SumMixing(0.5), bs.MeanMixing()],
                         ids=["power_sum", "power_sum_centred", "amplitude_sum", "sum", "mean"])
def test_consistency_makes_the_sources_mix_to_the_mixture_and_is_a_no_op_when_they_do(model):
    rng = np.random.default_rng(2)
    offset = getattr(model, "offset", 0.0)
    sources = tf.constant(rng.uniform(0.05, 0.9, (3, 4, 6, 5, 1)) - offset, tf.float32)
    mixture = tf.constant(rng.uniform(0.3, 0.95, (4, 6, 5, 1)) - offset, tf.float32)
    projected = model.project(sources, mixture)
    if isinstance(model, bs.DecibelMixing):  # the power (amplitude) sum in dB, computed here with numpy
        c = model.c
        decibels = PARAMS.db_min + (PARAMS.db_max - PARAMS.db_min) * (projected.numpy().astype(np.float64) + offset)
        mixed_db = c * np.log10(np.sum(10.0 ** (decibels / c), axis=0))
        target_db = PARAMS.db_min + (PARAMS.db_max - PARAMS.db_min) * (mixture.numpy().astype(np.float64) + offset)
        assert np.max(np.abs(mixed_db - target_db)) < 0.01
        # every source moved by the same dB shift per element: their power ratios are kept
        shift = (projected - sources).numpy()
        np.testing.assert_allclose(shift, np.broadcast_to(shift[:1], shift.shape), atol=1e-6)
    else:
        mixed = projected.numpy().sum(0) + 2 * offset if isinstance(model, bs.SumMixing) else projected.numpy().mean(0)
        np.testing.assert_allclose(mixed, mixture.numpy(), atol=1e-5)
    np.testing.assert_allclose(model.project(projected, model(projected)).numpy(), projected.numpy(), atol=1e-6)
    split = model.split(mixture, 3)  # the mixture's equal share: mixes back to it
    np.testing.assert_allclose(model(split).numpy(), mixture.numpy(), atol=1e-5)
    np.testing.assert_allclose(split.numpy(), np.broadcast_to(split.numpy()[:1], split.shape), atol=1e-6)


def test_options_are_traced_once_reproducible_and_end_consistent():
    calls = []
    mixing = bs.DecibelMixing(PARAMS)
    basis = bs.Basis(counting_priors(calls), mixing, SIGMAS, 5, 2e-5, levels=bs.visited_levels(4, 1, 2),
                     n_chains=3, denoise=True, consistency="step")
    assert basis.levels == [1, 3] and basis.evaluations == 3 * (2 * 5 + 1)
    assert "2 of 4 levels" in basis.describe() and "3 chains" in basis.describe()
    mixture = np.random.default_rng(0).uniform(0.3, 0.9, (5, 6, 5, 1)).astype(np.float32)
    first, history = bs.separate_in_batches(basis, mixture, seed=7, batch_size=2, init="mixture")
    again, _ = bs.separate_in_batches(basis, mixture, seed=7, batch_size=2, init="mixture")
    other, _ = bs.separate_in_batches(basis, mixture, seed=8, batch_size=2, init="mixture")
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == (2, 5, 6, 5, 1) and history.shape == (2, 2, 5, 6, 5, 1)
    assert basis.tracing_count == 1 and basis._compiled_finish.experimental_get_tracing_count() == 1
    error_db = np.abs(mixing(tf.constant(first)).numpy() - mixture) * (PARAMS.db_max - PARAMS.db_min)
    assert error_db.max() < 0.01  # step consistency: every step, and the estimate, mix to the mixture


def test_a_mixture_start_is_the_equal_share_plus_the_first_levels_noise():
    basis = bs.Basis(counting_priors([]), bs.DecibelMixing(PARAMS), SIGMAS, 1, 1e-5, levels=[2, 3])
    mixture = np.full((4, 32, 32, 1), 0.7, np.float32)
    start = basis.start(mixture, 5, init="mixture").numpy()
    share = 0.7 - 10 * np.log10(2) / (PARAMS.db_max - PARAMS.db_min)   # half the power: -3.01 dB
    assert abs(start.mean() - share) < 0.003
    assert start.std() == pytest.approx(SIGMAS[2], rel=0.02)


def test_sampler_settings_that_cannot_work_are_one_line_errors():
    priors = counting_priors([])
    with pytest.raises(UserError, match="n_chains must be"):
        bs.Basis(priors, bs.MeanMixing(), SIGMAS, 2, 1e-4, n_chains=0)
    with pytest.raises(UserError, match="unknown consistency"):
        bs.Basis(priors, bs.MeanMixing(), SIGMAS, 2, 1e-4, consistency="always")

    class NoProjection(bs.MeanMixing):  # a user's mixing model without a projection
        project = bs.MixingModel.project
        name = "custom"

    with pytest.raises(UserError, match="custom has no consistency projection; use consistency: none"):
        bs.Basis(priors, NoProjection(), SIGMAS, 2, 1e-4, consistency="step")
    with pytest.raises(UserError, match="custom cannot split a mixture"):
        bs.Basis(priors, NoProjection(), SIGMAS, 2, 1e-4).start(np.zeros((1, 4, 4, 1), np.float32), 0, "mixture")
    assert all(m.can_project for m in (bs.MeanMixing(), bs.SumMixing(), bs.DecibelMixing(PARAMS)))
    with pytest.raises(UserError, match="start_level must be in 0..3"):
        bs.visited_levels(4, 4)
    with pytest.raises(UserError, match="basis_levels must be in 1..2"):
        bs.visited_levels(4, 2, 3)
    assert bs.visited_levels(10, 0, 5) == [0, 2, 4, 7, 9] and bs.visited_levels(10, 3) == list(range(3, 10))
    assert bs.visited_levels(10, 0, 1) == [9]
