"""The seed's scripts as a user runs them: --help, config flags over the file, the resolved config on disk, and the
scripts that need no TensorFlow running without it."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from conftest import ROOT, assert_one_line_error, music_like, run_script, write_wav
from datasets import preprocessing as pp

SCRIPTS = ["train_ncsn.py", "train_glow.py", "train_noisy_glow.py", "datasets/wav_to_spec.py",
           "datasets/build_midi_dataset.py", "technique1_ncsnv2.py", "technique2and4_ncsnv2.py", "run_example.py",
           "ncsn_generate_samples.py", "melspec_inversion_basis.py", "oracle_systems.py", "bss_eval_v4.py",
           "train_realnvp.py", "run_basis_sep.py", "separate_songs.py", "export_prior.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    proc = run_script(script, "--help")
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr


@pytest.mark.parametrize("script, args", [
    ("bss_eval_v4.py", ["--references", "none.wav", "--estimates", "none.wav"]),
    ("melspec_inversion_basis.py", ["no_such_folder"]),
    ("oracle_systems.py", ["--song_dir", "no_such_song", "--output", "out"]),
], ids=["bss_eval_v4", "melspec_inversion_basis", "oracle_systems"])
def test_scripts_that_need_no_tensorflow_run_without_importing_it(script, args, tmp_path):
    """Run to their one-line error on a missing input (imports, parsing, checks), then look for TensorFlow."""
    code = ("import runpy, sys\n"
            f"sys.argv = [{script!r}, *{args!r}]\n"
            "try:\n"
            f"    runpy.run_path({str(ROOT / script)!r}, run_name='__main__')\n"
            "except SystemExit as stop:\n"
            "    assert stop.code == 2, stop.code\n"
            "sys.exit(3 if 'tensorflow' in sys.modules else 0)\n")
    proc = run_script("-c", code, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        pp.write_tfrecord(tmp_path / "piano" / split / "a.tfrecord",
                          rng.uniform(-100, 20, (6, 96, 64)).astype(np.float32), "a.wav", "dB")
    return tmp_path / "piano"


@pytest.mark.slow
def test_training_scripts_reject_bad_configs_and_datasets(dataset, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("n_filters: 8\nlearning_rat: 0.1\n")
    assert_one_line_error(run_script("train_ncsn.py", "--dataset", str(dataset), "--config", str(bad)),
                          "unknown key 'learning_rat'", str(bad), "learning_rate")
    assert_one_line_error(run_script("train_glow.py", "--dataset", str(dataset), "--config",
                                     "configs/melspec_ncsnv1.yml", "--output", str(tmp_path / "g")),
                          "missing required key 'L'")
    assert_one_line_error(run_script("train_ncsn.py", "--dataset", str(tmp_path / "nothing"), "--config",
                                     "configs/tiny_ncsn.yml", "--output", str(tmp_path / "n")), "does not exist")
    assert_one_line_error(run_script("train_ncsn.py", "--dataset", str(dataset), "--config",
                                     "configs/tiny_ncsn.yml", "--height", "28", "--output", str(tmp_path / "m")),
                          "shape (96, 64)", "(28, 64)")


@pytest.mark.slow
def test_train_ncsn_trains_checkpoints_and_resumes(dataset, tmp_path):
    output = tmp_path / "ncsn"
    common = ["train_ncsn.py", "--dataset", str(dataset), "--config", "configs/tiny_ncsn.yml", "--output",
              str(output), "--n_filters", "4", "--batch_size", "3", "--sample_every", "1", "--n_samples", "2",
              "--T", "1", "--ema", "true", "--learning_rate", "5e-4"]
    first = run_script(*common, "--n_epochs", "1", timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (output / "tf_ckpts" / "checkpoint").is_file() and (output / "tf_ckpts_latest" / "checkpoint").is_file()
    log = (output / "out.log").read_text()
    assert "epoch 1/1: train loss" in log
    assert "6 train and 6 test spectrograms" in log and "--n_filters 4" in log
    # the run records the resolved config: the flags win over the file, the file's other values are kept
    resolved = yaml.safe_load((output / "config.yml").read_text())
    file_values = yaml.safe_load((ROOT / "configs" / "tiny_ncsn.yml").read_text())
    assert resolved["n_filters"] == 4 and resolved["learning_rate"] == 5e-4 and resolved["T"] == 1
    assert resolved["num_classes"] == file_values["num_classes"] and resolved["sigmaL"] == file_values["sigmaL"]
    assert list((output / "tensorboard").glob("events.out.tfevents.*"))
    second = run_script(*common, "--n_epochs", "2", "--sample_every", "0", timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    log = (output / "out.log").read_text()
    assert "resumed from" in log and "epoch 2/2: train loss" in log and "epoch 1/2" not in log

    samples = run_script("ncsn_generate_samples.py", str(output), "--n_samples", "2", "--T", "2", timeout=900)
    assert samples.returncode == 0, samples.stderr[-3000:]
    mel = np.load(output / "samples" / "samples.npy")
    assert mel.shape == (2, 96, 64) and mel.min() >= -100 and mel.max() <= 20
    assert (output / "samples" / "samples.png").stat().st_size > 5000
    import soundfile as sf
    for index in range(2):
        audio, rate = sf.read(output / "samples" / f"sample_{index}.wav")
        assert rate == 16000 and audio.shape == (32640,) and np.all(np.isfinite(audio))
    again = run_script("ncsn_generate_samples.py", str(output), "--n_samples", "2", "--T", "2")
    assert_one_line_error(again, "already holds results", "--overwrite")
    assert_one_line_error(run_script("ncsn_generate_samples.py", str(tmp_path / "nothing")), "no checkpoint")


@pytest.mark.slow
def test_train_glow_then_noisy_glow_levels_chain_and_resume(dataset, tmp_path):
    glow = tmp_path / "glow"
    tiny = ["--config", "configs/tiny_glow.yml", "--L", "2", "--K", "1", "--n_filters", "4", "--batch_size", "3",
            "--n_epochs", "1", "--sample_every", "1"]
    first = run_script("train_glow.py", "--dataset", str(dataset), "--output", str(glow), *tiny, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "epoch 1/1: train loss" in (glow / "out.log").read_text()
    assert (glow / "tf_ckpts" / "checkpoint").is_file()

    mismatch = run_script("train_noisy_glow.py", str(glow), "--dataset", str(dataset), "--output",
                          str(tmp_path / "bad"), *tiny, "--K", "2")
    assert_one_line_error(mismatch, "was trained with K=1, the config says K=2")

    noisy = tmp_path / "noisy"
    command = ["train_noisy_glow.py", str(glow), "--dataset", str(dataset), "--output", str(noisy), *tiny,
               "--num_classes", "2", "--sigma1", "0.5", "--sigmaL", "0.05"]
    proc = run_script(*command, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in noisy.iterdir() if p.is_dir()) == ["sigma_0.05", "sigma_0.5"]
    for level in ("sigma_0.05", "sigma_0.5"):
        assert (noisy / level / "tf_ckpts" / "checkpoint").is_file()  # the layout run_basis_sep.py restores
    log = (noisy / "out.log").read_text()
    assert log.index("sigma 0.05") < log.index("sigma 0.5")  # chained from the smallest sigma up
    assert f"starting from {glow}" in log and "starting from " + str(noisy / "sigma_0.05") in log
    again = run_script(*command, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (noisy / "out.log").read_text().count("all 1 epochs are already done") == 2

    # BASIS with Glow priors: the levels are restored from sigma_<s>/tf_ckpts into one model
    song = tmp_path / "song"
    write_wav(song / "mix.wav", music_like(2.1, seed=1) + music_like(2.1, seed=2, f0=440.0))
    basis = ["run_basis_sep.py", str(noisy), str(noisy), "--song_dir", str(song), "--model", "glow",
             "--config", "configs/tiny_glow.yml", "--L", "2", "--K", "1", "--n_filters", "4", "--sigma1", "0.5",
             "--sigmaL", "0.05", "--num_classes", "2", "--T", "2", "--no_progress"]
    separated = run_script(*basis, "--output", str(tmp_path / "sep"), timeout=600)
    assert separated.returncode == 0, separated.stderr[-3000:]
    with np.load(tmp_path / "sep" / "results.npz") as results:
        assert results["x1"].shape == (2, 96, 64) and np.all(np.isfinite(results["x1"]))
    assert_one_line_error(run_script(*basis[:-3], "--num_classes", "3", "--T", "1", "--output",
                                     str(tmp_path / "sep3")), "no Glow checkpoint", "sigma_0.16")
    assert_one_line_error(run_script(*basis, "--K", "2", "--output", str(tmp_path / "sepk")),
                          "was trained with K=1, the config says K=2")


@pytest.mark.slow
def test_flowpp_trains_fine_tunes_per_noise_level_and_separates(dataset, tmp_path):
    """Flow++ through the flow scripts (``--flow flowpp``): train_glow.py, train_noisy_glow.py, then BASIS."""
    tiny = ["--config", "configs/tiny_flowpp.yml", "--flow", "flowpp", "--L", "2", "--K", "1", "--n_filters", "4",
            "--batch_size", "3", "--n_epochs", "1", "--sample_every", "1"]
    flow = tmp_path / "flowpp"
    first = run_script("train_glow.py", "--dataset", str(dataset), "--output", str(flow), *tiny, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    log = (flow / "out.log").read_text()
    assert "epoch 1/1: train loss" in log and (flow / "tf_ckpts" / "checkpoint").is_file()
    assert "flow: flowpp" in (flow / "config.yml").read_text()
    noisy = tmp_path / "noisy"
    levels = ["--num_classes", "2", "--sigma1", "0.5", "--sigmaL", "0.05"]
    proc = run_script("train_noisy_glow.py", str(flow), "--dataset", str(dataset), "--output", str(noisy), *tiny,
                      *levels, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all((noisy / level / "tf_ckpts" / "checkpoint").is_file() for level in ("sigma_0.05", "sigma_0.5"))
    song = tmp_path / "song"
    write_wav(song / "mix.wav", music_like(2.1, seed=1) + music_like(2.1, seed=2, f0=440.0))
    basis = ["run_basis_sep.py", str(noisy), str(noisy), "--song_dir", str(song), "--model", "glow", *tiny[:10],
             *levels, "--T", "2", "--no_progress"]
    separated = run_script(*basis, "--output", str(tmp_path / "sep"), timeout=600)
    assert separated.returncode == 0, separated.stderr[-3000:]
    with np.load(tmp_path / "sep" / "results.npz") as results:
        assert results["x1"].shape == (2, 96, 64) and np.all(np.isfinite(results["x1"]))
    basis[basis.index("flowpp")] = "glow"  # Flow++ checkpoints are not a Glow's: one line naming both
    assert_one_line_error(run_script(*basis, "--output", str(tmp_path / "sepg")),
                          "was trained with flow=flowpp, the config says flow=glow")


@pytest.mark.slow
def test_flowpp_trains_with_variational_dequantization_on_8_bit_images(tmp_path):
    """--dequantization variational: q(u|x) is trained with the flow on the bound, checkpointed and resumed."""
    rng = np.random.default_rng(0)
    images = tmp_path / "digits.npz"
    np.savez(images, train=rng.integers(0, 256, (24, 8, 8), dtype=np.uint8),
             test=rng.integers(0, 256, (8, 8, 8), dtype=np.uint8))
    common = ["train_glow.py", "--dataset", str(images), "--config", "configs/tiny_glow.yml", "--flow", "flowpp",
              "--L", "2", "--K", "1", "--n_filters", "4", "--batch_size", "8", "--height", "8", "--width", "8"]
    output = tmp_path / "run"
    proc = run_script(*common, "--dequantization", "variational", "--n_epochs", "1", "--output", str(output),
                      timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import re
    losses = [float(v) for v in re.findall(r"test loss ([0-9.]+)", (output / "out.log").read_text())]
    # uniform random pixels: 8 bits/dim exactly for the best model; the bound is above that, by a finite margin
    assert losses and all(8.0 < loss < 20.0 for loss in losses), losses
    again = run_script(*common, "--dequantization", "variational", "--n_epochs", "2", "--output", str(output),
                       timeout=900)
    assert again.returncode == 0 and "resumed from" in (output / "out.log").read_text(), again.stderr[-2000:]
    assert_one_line_error(run_script(*common, "--dequantization", "variational", "--dequantization_noise", "0.5",
                                     "--output", str(tmp_path / "bad")), "replaces dequantization_noise")
