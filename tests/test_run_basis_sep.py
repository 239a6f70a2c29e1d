"""run_basis_sep.py as a user runs it: the seed's command line, results.npz, --inverse, toy images, bad input.

The spectrogram prior is the shipped piano prior (for the file layout and the error paths); the image priors are
two tiny networks trained on visibly different image classes (horizontal vs vertical bars; stored in
tests/fixtures/bar_priors by make_bar_priors.py), whose held-out mixtures BASIS must separate clearly better than
the baseline that returns the mixture for both sources.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, assert_one_line_error, music_like, run_script, write_wav
from core import spectral
from core.config import load_config
from fixtures.make_bar_priors import N_TEST, N_TRAIN, OUTPUT as BAR_PRIORS, SIZE, bar_sets

SEG = spectral.SpectrogramParams().segment_samples
TINY = ["--T", "2", "--no_progress"]


@pytest.fixture(scope="module")
def spectrogram_prior():
    """The shipped piano prior (NCSN v1, 16 filters, 10 noise levels), used for both sources: these tests are about
    the files, the options and the error paths, not the quality of the separation."""
    return ROOT / "pretrained" / "piano"


@pytest.fixture
def song(tmp_path):
    """A 2.5 s song (two segments, the second padded): mix.wav = piano.wav + violin.wav."""
    piano, violin = music_like(2.5, seed=1, f0=110.0), music_like(2.5, seed=2, f0=440.0)
    folder = tmp_path / "song"
    write_wav(folder / "piano.wav", piano)
    write_wav(folder / "violin.wav", violin)
    write_wav(folder / "mix.wav", piano + violin)
    return folder


def separate(prior, song_dir, output, *extra):
    return run_script("run_basis_sep.py", str(prior), str(prior), "--song_dir", str(song_dir), "--model", "ncsn",
                      "--config", str(prior / "config.yml"), "--output", str(output), *TINY, *extra, timeout=600)


@pytest.mark.slow
def test_seed_command_line_writes_results_audio_and_scores(spectrogram_prior, song, tmp_path):
    output = tmp_path / "sep"
    proc = separate(spectrogram_prior, song, output, "--inverse")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(output / "results.npz") as results:
        assert set(results.files) == {"x1", "x2", "gt1", "gt2", "mixed", "stft_mixture", "sources", "n_samples"}
        for key in ("x1", "x2", "gt1", "gt2", "mixed"):
            assert results[key].shape == (2, 96, 64) and results[key].dtype == np.float32, key
            assert results[key].min() >= -100 and results[key].max() <= 20
        assert results["stft_mixture"].shape == (2, 1025, 64) and np.iscomplexobj(results["stft_mixture"])
        assert results["sources"].tolist() == ["piano", "violin"] and int(results["n_samples"]) == 40000
        # the ground truth and the mixture are the songs' own mel spectrograms, computed independently here
        mix, _ = sf.read(song / "mix.wav", dtype="float32")
        expected = spectral.mel_spectrogram_segments(spectral.segment_audio(mix, SEG), spectral.SpectrogramParams(), "dB")
        np.testing.assert_allclose(results["mixed"], expected, atol=1e-4)
        first_x1 = results["x1"]
    shipped = load_config(spectrogram_prior / "config.yml")
    visited = shipped.basis_levels or shipped.num_classes - shipped.start_level  # the levels the sampler visits
    with np.load(output / "results_convergence.npz") as convergence:
        assert convergence["x1"].shape == (visited, 2, 96, 64) and convergence["sigmas"].shape == (visited,)
        np.testing.assert_allclose(convergence["sigmas"][-1], shipped.sigmaL, rtol=1e-6)
    for name in ("piano", "violin"):
        audio, rate = sf.read(output / f"{name}.wav")
        assert rate == 16000 and audio.shape == (40000,) and np.all(np.isfinite(audio))
    assert (output / "metrics.json").is_file() and "BSS Eval v4" in proc.stdout and "piano" in proc.stdout
    assert (output / "spectrograms.png").stat().st_size > 10_000
    assert list((output / "tensorboard").glob("events.out.tfevents.*"))
    assert (output / "config.yml").is_file() and "BASIS with ncsn priors" in (output / "out.log").read_text()
    assert not (output / "basis_state.npz").exists()
    run = json.loads((output / "run.json").read_text())  # what the listening page shows, and where the song is
    assert run["song_dir"] == str(song.resolve()) and run["sources"] == ["piano", "violin"] and run["seed"] == 0
    assert run["sampler"]["T"] == load_config(output / "config.yml").T and "run_basis_sep.py" in run["command"]
    page = (output / "report.html").read_text()
    assert page.count("<audio") == 5 and 'src="piano.wav"' in page  # mixture, 2 ground truths, 2 estimates

    assert_one_line_error(separate(spectrogram_prior, song, output), "already holds results", "--overwrite")
    same = separate(spectrogram_prior, song, tmp_path / "same", "--no_report")
    assert not (tmp_path / "same" / "report.html").exists()
    other = separate(spectrogram_prior, song, tmp_path / "other", "--seed", "1")
    assert same.returncode == 0 and other.returncode == 0, same.stderr[-2000:] + other.stderr[-2000:]
    with np.load(tmp_path / "same" / "results.npz") as a, np.load(tmp_path / "other" / "results.npz") as b:
        np.testing.assert_array_equal(a["x1"], first_x1)  # a fixed --seed reproduces the run
        assert not np.array_equal(b["x1"], first_x1)


@pytest.mark.slow
def test_song_without_source_wavs_is_separated_without_metrics(spectrogram_prior, song, tmp_path):
    (song / "piano.wav").unlink()
    (song / "violin.wav").unlink()
    output = tmp_path / "sep"
    proc = separate(spectrogram_prior, song, output, "--inverse", "--n_mixed", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "metrics are skipped" in proc.stderr
    with np.load(output / "results.npz") as results:
        assert "gt1" not in results.files and results["x1"].shape == (1, 96, 64)
    assert (output / "piano.wav").is_file() and not (output / "metrics.json").exists()
    inverse = run_script("melspec_inversion_basis.py", str(output), "--wiener_filter")  # no ground truth: still works
    assert inverse.returncode == 0, inverse.stderr[-2000:]


@pytest.mark.slow
def test_bad_input_gives_one_line_errors(spectrogram_prior, song, tmp_path):
    out = str(tmp_path / "out")
    assert_one_line_error(run_script("run_basis_sep.py", str(tmp_path / "nowhere"), str(spectrogram_prior),
                                     "--song_dir", str(song), "--config", "configs/tiny_ncsn.yml", "--output", out),
                          "no checkpoint at", "nowhere")
    assert_one_line_error(separate(spectrogram_prior, song, out, "--n_filters", "8"),
                          "was trained with n_filters=16, the config says n_filters=8")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(separate(spectrogram_prior, empty, out), "has no mix.wav")
    assert_one_line_error(separate(spectrogram_prior, song, out, "--sources", "piano"),
                          "2 restore paths but 1 source names")
    diverged = separate(spectrogram_prior, song, out, "--step_lr", "1e35", "--start_level", "0", "--basis_levels",
                        "10")
    assert_one_line_error(diverged, "NaN/inf at noise level 1/10", "step")
    # sampler settings that cannot work
    assert_one_line_error(separate(spectrogram_prior, song, out, "--n_chains", "0"),
                          "key 'n_chains' must be at least 1")
    assert_one_line_error(separate(spectrogram_prior, song, out, "--start_level", "10"),
                          "key 'start_level' must be in 0..9")
    assert_one_line_error(separate(spectrogram_prior, song, out, "--start_level", "9", "--basis_levels", "2"),
                          "key 'basis_levels' must be in 1..1")
    assert_one_line_error(separate(spectrogram_prior, song, out, "--start_level", "3", "--init", "uniform"),
                          "use init: mixture")
    assert_one_line_error(separate(spectrogram_prior, song, out, "--temperature", "-1"),
                          "key 'temperature' must be at least 0")
    write_wav(song / "violin.wav", music_like(1.0, seed=3), sr=22050)  # another rate and length: warned, fitted
    proc = separate(spectrogram_prior, song, tmp_path / "fitted", "--n_mixed", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resampled from 22050 Hz" in proc.stderr and "padded with silence" in proc.stderr


# ------------------------------------------------------------------------------------------------- toy images

@pytest.fixture(scope="module")
def bar_priors(tmp_path_factory):
    """The two tiny bar priors stored in tests/fixtures/bar_priors (made by make_bar_priors.py) and 100 test pairs
    (horizontal i, vertical i) of held-out images: the generator's draws after the 1000 training images."""
    root = tmp_path_factory.mktemp("bars")
    images = bar_sets()
    pairs = np.empty((2 * N_TEST, SIZE, SIZE), np.uint8)
    pairs[0::2], pairs[1::2] = images["horizontal"][N_TRAIN:], images["vertical"][N_TRAIN:]
    np.savez(root / "pairs.npz", train=pairs, test=pairs)
    for name in ("horizontal", "vertical"):
        (root / name).symlink_to(BAR_PRIORS / name)
    return root


@pytest.mark.slow
def test_tiny_image_priors_separate_their_mixtures(bar_priors, tmp_path):
    output = tmp_path / "toy"
    proc = run_script("run_basis_sep.py", str(bar_priors / "horizontal"), str(bar_priors / "vertical"),
                      "--dataset", str(bar_priors / "pairs.npz"),
                      "--config", str(bar_priors / "horizontal" / "config.yml"),  # the config stored with the prior
                      "--n_mixed", "48", "--batch_segments", "48", "--output", str(output), "--no_progress",
                      timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(output / "psnr.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 48
    basis = np.mean([float(r["psnr"]) for r in rows])
    baseline = np.mean([float(r["baseline_psnr"]) for r in rows])
    # independent check of the stored PSNR: recompute from results.npz with numpy
    with np.load(output / "results.npz") as results:
        assert results["x1"].shape == (48, 8, 8, 1)
        mse = [np.mean((results[f"x{k}"] - results[f"gt{k}"]) ** 2, axis=(1, 2, 3)) for k in (1, 2)]
        recomputed = np.mean([10 * np.log10(1 / m) for m in mse], axis=0)
        np.testing.assert_allclose(recomputed, [float(r["psnr"]) for r in rows], atol=1e-3)
    assert basis > baseline + 2.5, (basis, baseline)  # measured with the stored priors: 16.4 dB against 12.6 dB
    assert f"BASIS {basis:.2f} dB" in proc.stdout
    assert (output / "separation.png").stat().st_size > 10_000
