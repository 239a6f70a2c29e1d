"""separation.bss_eval and its command line bss_eval_v4.py: museval 0.4.1's numbers (stored fixture), analytic checks, the store/aggregation, the script.

The museval values come from ``tests/fixtures/make_bss_eval_fixtures.py`` (run once with museval installed in a
separate environment); the signals are regenerated here from the same seeded code, so museval is not needed.
"""
from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import ROOT, assert_one_line_error, run_script

from separation import bss_eval as bss

_spec = importlib.util.spec_from_file_location("make_bss_eval_fixtures",
                                               ROOT / "tests" / "fixtures" / "make_bss_eval_fixtures.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

TOLERANCE_DB = 0.01
SCRIPT = "bss_eval_v4.py"


@pytest.fixture(scope="module")
def museval_scores():
    assert fixtures.FIXTURE.is_file(), f"missing {fixtures.FIXTURE}; see make_bss_eval_fixtures.py"
    with np.load(fixtures.FIXTURE) as stored:
        return {key: stored[key] for key in stored.files}


# ------------------------------------------------------------------------------------------- against museval
@pytest.mark.parametrize("case", list(fixtures.CASES))
def test_matches_museval(case, museval_scores):
    references, estimates, kwargs = fixtures.make_case(case)
    np.testing.assert_allclose(fixtures.checksum(references, estimates), museval_scores[f"{case}/checksum"],
                               rtol=1e-12, err_msg="the generator changed: regenerate the fixture")
    assert json.loads(str(museval_scores[f"{case}/kwargs"])) == kwargs

    ours = bss.bss_eval(references, estimates, **kwargs)
    for name, values in zip(("sdr", "isr", "sir", "sar"), ours[:4]):
        expected = museval_scores[f"{case}/{name}"]
        assert values.shape == expected.shape, name
        np.testing.assert_array_equal(np.isnan(values), np.isnan(expected), err_msg=f"{name}: NaN pattern")
        np.testing.assert_array_equal(np.isinf(values), np.isinf(expected), err_msg=f"{name}: inf pattern")
        finite = np.isfinite(expected)
        assert np.abs(values[finite] - expected[finite]).max(initial=0.0) < TOLERANCE_DB, name
    np.testing.assert_array_equal(ours[4], museval_scores[f"{case}/perm"])


@pytest.mark.parametrize("case", ["noise_mono_2src_defaults", "music_stereo_3src", "noise_stereo_4src_perm"])
def test_long_window_path_matches_museval(case, museval_scores, monkeypatch):
    """Windows too long for one FFT within the memory budget are filtered block by block (overlap-add)."""
    monkeypatch.setattr(bss, "_CHUNK_BYTES", 2**20)
    monkeypatch.setattr(bss, "_LONG_BLOCK_FFT", 2048)
    references, estimates, kwargs = fixtures.make_case(case)
    ours = bss.bss_eval(references, estimates, **kwargs)
    for name, values in zip(("sdr", "isr", "sir", "sar"), ours[:4]):
        expected = museval_scores[f"{case}/{name}"]
        np.testing.assert_array_equal(np.isnan(values), np.isnan(expected))
        finite = np.isfinite(expected)
        assert np.abs(values[finite] - expected[finite]).max(initial=0.0) < TOLERANCE_DB, name


def test_fixture_cases_cover_what_they_claim(museval_scores):
    """The stored cases do exercise NaN windows, a non-trivial permutation and museval's NaN-mean quirk."""
    assert np.isnan(museval_scores["music_mono_2src/sdr"]).any()  # silent reference
    assert np.isnan(museval_scores["music_stereo_3src/sdr"]).any()  # silent estimate
    assert museval_scores["noise_stereo_4src_perm/perm"][:, 0].tolist() == [1, 3, 0, 2]
    # shuffled estimates but a NaN window: the mean SIR is NaN for every permutation, museval keeps the identity
    assert museval_scores["noise_mono_3src_perm_silent/perm"][:, 0].tolist() == [0, 1, 2]
    assert museval_scores["music_mono_4src_v3/perm"].shape == (4, 3)  # one permutation per window in v3
    assert np.isnan(museval_scores["music_stereo_2src_sources_version/isr"]).all()


# ----------------------------------------------------------------------------------------------- analytic
def _stationary_sources(rng, n_sources, n_samples, n_channels):
    """Independent, stationary sources (coloured noise), (n_sources, n_samples, n_channels)."""
    white = rng.standard_normal((n_sources, n_samples + 8, n_channels))
    return 0.5 * (white[:, 8:] + 0.6 * white[:, 7:-1] - 0.2 * white[:, :-8])


def test_perfect_estimate_scores_very_high(rng):
    references = _stationary_sources(rng, 2, 16000, 2)
    sdr, isr, sir, sar, perm = bss.bss_eval(references, references.copy(), window=8000, hop=8000)
    assert sdr.shape == (2, 2) and perm.tolist() == [[0], [1]]
    assert np.all(np.isinf(sdr))  # the error is exactly zero, as museval reports it
    for values in (isr, sir, sar):  # limited only by rounding in the projections
        assert np.all(values > 100), values


def test_white_noise_estimate_gives_the_snr_as_sdr(rng):
    rate = 8000
    references = _stationary_sources(rng, 2, 4 * rate, 1)
    noise = rng.standard_normal(references.shape)
    noise *= np.sqrt(np.sum(references ** 2, axis=(1, 2), keepdims=True) / np.sum(noise ** 2, axis=(1, 2),
                                                                                   keepdims=True)) / 10 ** (10 / 20)
    sdr, isr, sir, sar, _ = bss.bss_eval(references, references + noise, window=rate, hop=rate)
    # SDR compares the estimate with the unfiltered reference: it is exactly the SNR of each window
    frames = np.arange(4) * rate
    snr = [[10 * np.log10(np.sum(references[j, s:s + rate] ** 2) / np.sum(noise[j, s:s + rate] ** 2))
            for s in frames] for j in range(2)]
    np.testing.assert_allclose(sdr, snr, atol=1e-9)
    assert np.all(np.abs(sdr - 10) < 0.5)
    # the filters hardly fit white noise: almost all of it is an artifact, none of it interference
    np.testing.assert_allclose(sar, sdr, atol=0.3)
    assert np.all(sir > 25) and np.all(isr > 25)


@pytest.mark.parametrize("seconds", [6.3, 6.01, 6.0])  # a rest longer than the filters, shorter, none
def test_tiled_correlations_equal_the_direct_ones_and_a_brute_force_sum(rng, seconds):
    """Windows that tile the signal (hop = window) share their spectra with the filters' correlations."""
    rate, filters_len = 4000, 512
    n_samples = int(seconds * rate)
    references, estimates = (_stationary_sources(rng, 2, n_samples, 2) for _ in range(2))
    bounds = bss.frame_bounds(rate, rate, references.shape[1])
    layout = bss._Pairs(((0, 0), (1, 1)), 2, 2)
    spectra, blocks, n_fft = bss._tiled_spectra(references, estimates, bounds, filters_len, layout)
    assert blocks[:len(bounds)] == bounds and blocks[-1][1] == references.shape[1]
    tiled = bss._tiled_correlations(references, estimates, spectra, blocks, n_fft, filters_len)
    direct = bss._cross_correlations(references, [references, estimates], filters_len)
    np.testing.assert_allclose(tiled, direct, rtol=0, atol=1e-10 * np.abs(direct).max())
    x, y = references[1, :, 0], estimates[0, :, 1]  # row 2 of the references, column 2 + 1 of the signals
    for lag in (-filters_len + 1, -1, 0, 7, filters_len - 1):
        brute = np.dot(x[max(0, -lag):len(x) - max(0, lag)], y[max(0, lag):len(y) - max(0, -lag)])
        assert tiled[2, 5, filters_len - 1 + lag] == pytest.approx(brute, rel=1e-10)
    assert bss._tiled_spectra(references, estimates, bss.frame_bounds(rate, rate // 2, references.shape[1]),
                              filters_len, layout) is None  # overlapping windows: the direct correlations


def test_gram_matrix_is_the_inner_products_of_the_delayed_signals(rng):
    """Entry ((a, p), (b, q)) = <signal a delayed by p, signal b delayed by q>, summed over the zero-padded signals."""
    filters_len, n_samples = 6, 40
    signals = rng.standard_normal((3, n_samples, 1))
    correlations = bss._cross_correlations(signals, [signals], filters_len)
    gram = bss._gram_matrix(correlations, filters_len)
    delayed = np.zeros((3, filters_len, n_samples + filters_len - 1))
    for a, p in np.ndindex(3, filters_len):
        delayed[a, p, p:p + n_samples] = signals[a, :, 0]
    rows = delayed.reshape(3 * filters_len, -1)
    np.testing.assert_allclose(gram, rows @ rows.T, rtol=0, atol=1e-12)


def test_frame_bounds_follow_museval():
    assert bss.frame_bounds(3, 2, 10) == [(0, 3), (2, 5), (4, 7), (6, 9)]  # floor((10 - 3 + 2) / 2) = 4
    assert bss.frame_bounds(4, 4, 10) == [(0, 4), (4, 8)]  # the last incomplete window is dropped
    assert bss.frame_bounds(2.5, 1.5, 6) == [(0, 2), (1, 4), (3, 5)]  # fractional: starts and stops floored
    assert bss.frame_bounds(np.inf, np.inf, 7) == [(0, 7)]
    assert bss.frame_bounds(20, 5, 7) == [(0, 7)]


def test_shapes_dtypes_and_input_checks(rng):
    references = _stationary_sources(rng, 2, 3000, 1)
    estimates = references + 0.1 * rng.standard_normal(references.shape)
    mono_2d = bss.bss_eval(references[..., 0], estimates[..., 0], window=1000, hop=1000)
    float32 = bss.bss_eval(references.astype(np.float32), estimates.astype(np.float32), window=1000, hop=1000)
    assert mono_2d[0].shape == (2, 3) and mono_2d[4].dtype.kind == "i"
    np.testing.assert_allclose(float32[0], mono_2d[0], atol=1e-3)
    with pytest.raises(ValueError, match="same shape"):
        bss.bss_eval(references, estimates[:, :-1], window=1000, hop=1000)
    silent = estimates.copy()
    silent[1] = 0
    with pytest.raises(ValueError, match="estimated source 1 is silent"):
        bss.bss_eval(references, silent)
    assert isinstance(bss.BSSEvalInputError("x"), bss.UserError)


def test_evaluate_pads_or_cuts_estimates_with_a_warning(rng, capsys):
    references = _stationary_sources(rng, 2, 4000, 2)
    estimates = references + 0.2 * rng.standard_normal(references.shape)
    short = estimates[:, :3500]
    scores = bss.evaluate(references, short, win=1000, hop=1000)
    assert "zero-padded to 4000 samples" in capsys.readouterr().err
    padded = np.concatenate([short, np.zeros((2, 500, 2))], axis=1)
    expected = bss.bss_eval(references, padded, window=1000, hop=1000)
    for ours, theirs in zip(scores, expected):
        np.testing.assert_array_equal(ours, theirs)
    assert not np.isnan(scores[0][:, 3]).any()  # the last window keeps 500 non-zero samples
    long = np.concatenate([estimates, estimates[:, :700]], axis=1)
    np.testing.assert_array_equal(bss.evaluate(references, long, win=1000, hop=1000)[0],
                                  bss.evaluate(references, estimates, win=1000, hop=1000)[0])
    assert "cut to 4000 samples" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ store and aggregation
def _track(name, sdr_rows):
    sdr = np.array(sdr_rows, dtype=float)
    return bss.Scores(["vocals", "drums"], dict(zip(bss.METRICS, (sdr, sdr + 1, sdr + 2, sdr + 3))), 1.0, 1.0, name)


def test_json_layout_roundtrip_and_csv(tmp_path):
    track = _track("song", [[1.0, np.nan, 3.123456789], [np.inf, 2.0, 4.0]])
    path = track.save_json(tmp_path / "song.json")
    data = json.loads(path.read_text())  # NaN literals, as museval writes them
    assert [t["name"] for t in data["targets"]] == ["vocals", "drums"]
    frame = data["targets"][0]["frames"][2]
    assert frame["time"] == 2.0 and frame["duration"] == 1.0
    assert set(frame["metrics"]) == {"SDR", "SIR", "ISR", "SAR"}
    assert frame["metrics"]["SDR"] == 3.12346  # quantised to 1e-5 dB like museval
    assert math.isnan(data["targets"][1]["frames"][0]["metrics"]["SDR"])  # +inf is stored as NaN, like museval
    back = bss.Scores.load(path)
    assert back.track == "song" and back.targets == ["vocals", "drums"]
    np.testing.assert_allclose(back.metric("SAR"), track.stored("SAR"), equal_nan=True)

    table = pd.read_csv(track.save_csv(tmp_path / "song.csv"))
    assert list(table.columns) == ["track", "target", "metric", "time", "score"]
    assert len(table) == 2 * 4 * 3
    row = table[(table.target == "drums") & (table.metric == "SAR") & (table.time == 1.0)]
    assert row.score.item() == pytest.approx(5.0)


def test_aggregate_is_median_over_frames_then_over_tracks():
    tracks = [_track("a", [[1.0, 2.0, 9.0], [0.0, np.nan, 4.0]]),
              _track("b", [[3.0, np.nan, np.nan], [5.0, 6.0, 7.0]]),
              _track("c", [[10.0, 11.0, 12.0], [np.inf, -1.0, 1.0]])]
    summary = bss.aggregate(tracks)
    assert list(summary.columns) == ["SDR", "ISR", "SIR", "SAR"] and list(summary.index) == ["vocals", "drums"]
    # vocals: per-track medians 2, 3, 11 -> 3; drums: 2, 6, median(NaN, -1, 1) = 0 -> 2
    assert summary.loc["vocals", "SDR"] == 3.0 and summary.loc["drums", "SDR"] == 2.0
    assert summary.loc["vocals", "SAR"] == 6.0
    per_track = tracks[0].median()
    assert per_track.loc["drums", "SDR"] == 2.0 and per_track.loc["vocals", "ISR"] == 3.0


# ------------------------------------------------------------------------------------------------- script
@pytest.fixture
def wav_files(tmp_path):
    references, estimates, _ = fixtures.make_case("music_stereo_2src_fractional")
    paths = {}
    for j, name in enumerate(("piano", "violin")):
        paths[name] = tmp_path / f"{name}.wav"
        paths[f"{name}_est"] = tmp_path / f"{name}_est.wav"
        sf.write(paths[name], references[j], 8000, subtype="FLOAT")
        sf.write(paths[f"{name}_est"], estimates[j], 8000, subtype="FLOAT")
    sf.write(tmp_path / "mono.wav", references[0, :, 0], 8000, subtype="FLOAT")
    sf.write(tmp_path / "rate.wav", references[1], 16000, subtype="FLOAT")
    (tmp_path / "text.wav").write_text("not audio")
    return paths, references, estimates


def test_script_prints_the_table_and_writes_json_and_csv(wav_files, tmp_path):
    paths, references, estimates = wav_files
    output = tmp_path / "scores"
    proc = run_script(SCRIPT, "--references", str(paths["piano"]), str(paths["violin"]), "--estimates",
                      str(paths["piano_est"]), str(paths["violin_est"]), "--names", "pf", "vn",
                      "--window", "0.5", "--hop", "0.5", "--output", str(output))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if "SDR" in line and "SAR" in line)
    assert header.split() == ["SDR", "ISR", "SIR", "SAR"]
    expected = bss.evaluate(references, estimates, win=4000, hop=4000)  # what the script must have computed
    row = next(line for line in lines if line.startswith("vn ")).split()
    np.testing.assert_allclose([float(v) for v in row[1:]],
                               [np.nanmedian(expected[m][1]) for m in range(4)], atol=1e-3)
    data = json.loads((output / "metrics.json").read_text())
    assert [t["name"] for t in data["targets"]] == ["pf", "vn"]
    assert len(data["targets"][0]["frames"]) == 8 and data["targets"][0]["frames"][1]["time"] == 0.5
    np.testing.assert_allclose([f["metrics"]["SIR"] for f in data["targets"][1]["frames"]], expected[2][1],
                               atol=1e-5)
    table = pd.read_csv(output / "metrics.csv")
    assert len(table) == 2 * 4 * 8


def test_script_help():
    proc = run_script(SCRIPT, "--help")
    assert proc.returncode == 0 and "--references" in proc.stdout and "--window" in proc.stdout


def test_script_rejects_bad_input_in_one_line(wav_files, tmp_path):
    paths, _, _ = wav_files
    ref = [str(paths["piano"]), str(paths["violin"])]
    est = [str(paths["piano_est"]), str(paths["violin_est"])]
    assert_one_line_error(run_script(SCRIPT, "--references", *ref, "--estimates", est[0]), "2 reference files",
                          "1 estimate")
    assert_one_line_error(run_script(SCRIPT, "--references", ref[0], str(tmp_path / "missing.wav"),
                                     "--estimates", *est), "missing.wav", "does not exist")
    assert_one_line_error(run_script(SCRIPT, "--references", ref[0], str(tmp_path / "text.wav"),
                                     "--estimates", *est), "text.wav", "not audio")
    assert_one_line_error(run_script(SCRIPT, "--references", ref[0], str(tmp_path / "rate.wav"),
                                     "--estimates", *est), "sample rates", "16000")
    assert_one_line_error(run_script(SCRIPT, "--references", *ref, "--estimates", est[0],
                                     str(tmp_path / "mono.wav")), "channels")
    assert_one_line_error(run_script(SCRIPT, "--references", *ref, "--estimates", *est, "--names", "one"),
                          "1 names for 2 sources")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros((8000, 2)), 8000)
    assert_one_line_error(run_script(SCRIPT, "--references", *ref, "--estimates", est[0], str(silent)),
                          "silent")


def test_matches_museval_on_real_music():
    """6 s of a rendered piano/violin chorale (the open dataset), IRM1 oracle estimates with some leakage;
    museval's scores stored by tests/fixtures/make_bss_eval_real_music_fixture.py."""
    from fixtures import make_bss_eval_real_music_fixture as real

    references, estimates = real.load_signals()
    with np.load(real.FIXTURE) as stored:
        expected = {key: stored[key] for key in ("sdr", "isr", "sir", "sar", "perm")}
    ours = bss.bss_eval(references, estimates, window=real.RATE, hop=real.RATE)
    for name, values in zip(("sdr", "isr", "sir", "sar"), ours[:4]):
        assert values.shape == expected[name].shape == (2, 6)
        assert np.all(np.isfinite(values))
        assert np.abs(values - expected[name]).max() < TOLERANCE_DB, name
    np.testing.assert_array_equal(ours[4], expected["perm"])


def test_the_script_module_re_exports_the_library():
    import bss_eval_v4

    for name in bss_eval_v4.__all__[:-1]:
        assert getattr(bss_eval_v4, name) is getattr(bss, name), name
