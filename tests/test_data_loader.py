"""The tf.data training pipeline and the song loader."""
from __future__ import annotations

import dataclasses
import textwrap

import numpy as np
import pytest

from conftest import SR, music_like, run_script, write_wav
from core import spectral
from core.errors import UserError
from datasets import data_loader as dl
from datasets import preprocessing as pp

PARAMS = spectral.SpectrogramParams()
SHAPE = (96, 64)


def make_source_dataset(root, n_train_files=3, n_test_files=1, per_file=10, seed=0, scale="dB"):
    """DATASET_FOLDER/<source>/{train,test}/*.tfrecord of random spectrograms; returns them by split."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, n_files in (("train", n_train_files), ("test", n_test_files)):
        arrays = []
        for index in range(n_files):
            spectrograms = rng.uniform(-100, 20, (per_file, *SHAPE)).astype(np.float32)
            if scale == "power":
                spectrograms = spectral.db_to_power(spectrograms).astype(np.float32)
            pp.write_tfrecord(root / split / f"part{index}.tfrecord", spectrograms, f"file{index}.wav", scale)
            arrays.append(spectrograms)
        written[split] = np.concatenate(arrays)
    return written


def collect(dataset):
    return np.concatenate([batch.numpy() for batch in dataset])


def sort_rows(array):
    flat = array.reshape(array.shape[0], -1)
    return flat[np.lexsort(flat.T[::-1])]


def test_pipeline_delivers_every_record_scaled_to_unit(tmp_path):
    written = make_source_dataset(tmp_path / "piano")
    data = dl.load_source_data(tmp_path / "piano", batch_size=7, scaling=dl.Scaling("dB"), shape=SHAPE, seed=1)
    assert (data.n_train, data.n_test) == (30, 10)
    train = collect(data.train)
    assert train.shape == (30, 96, 64, 1) and train.dtype == np.float32
    expected = (written["train"] + 100.0) / 120.0
    np.testing.assert_allclose(sort_rows(train[..., 0]), sort_rows(expected), atol=1e-6)
    test = collect(data.test)
    np.testing.assert_allclose(test[..., 0], (written["test"] + 100.0) / 120.0, atol=1e-6)  # test keeps order


def test_train_is_reshuffled_each_epoch(tmp_path):
    make_source_dataset(tmp_path / "piano", per_file=20)
    data = dl.load_source_data(tmp_path / "piano", batch_size=60, scaling=dl.Scaling("dB"), shape=SHAPE, seed=3)
    first, second = collect(data.train), collect(data.train)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(sort_rows(first[..., 0]), sort_rows(second[..., 0]))


def test_centered_logit_and_noise(tmp_path):
    written = make_source_dataset(tmp_path / "violin", n_train_files=1, n_test_files=1)
    files = dl.list_tfrecords(tmp_path / "violin", "test")
    unit = (written["test"] + 100.0) / 120.0
    centered = collect(dl.make_dataset(files, 4, dl.Scaling("dB", centered=True), SHAPE, shuffle=False))
    np.testing.assert_allclose(centered[..., 0], unit - 0.5, atol=1e-6)
    alpha = 0.05
    logit = collect(dl.make_dataset(files, 4, dl.Scaling("dB", logit_alpha=alpha), SHAPE, shuffle=False))
    squeezed = alpha + (1 - 2 * alpha) * unit
    np.testing.assert_allclose(logit[..., 0], np.log(squeezed / (1 - squeezed)), atol=1e-4)
    noisy = collect(dl.make_dataset(files, 4, dl.Scaling("dB", dequantization_noise=0.01), SHAPE, shuffle=False))
    lifted = noisy[..., 0] * 1.01 - unit  # = 0.01 * U(0, 1)
    assert lifted.min() >= -1e-6 and lifted.max() <= 0.01 + 1e-6 and lifted.std() > 0.002


@pytest.mark.parametrize("scaling", [dl.Scaling(), dl.Scaling(centered=True), dl.Scaling(logit_alpha=0.05)],
                         ids=["unit", "centred", "logit"])
def test_model_units_round_trip_in_numpy_and_tensorflow(scaling):
    import tensorflow as tf

    unit = np.linspace(0.0, 1.0, 101, dtype=np.float32).reshape(1, 101, 1)
    alpha = scaling.logit_alpha
    expected = (np.log((alpha + (1 - 2 * alpha) * unit) / (1 - alpha - (1 - 2 * alpha) * unit)) if alpha
                else unit - 0.5 if scaling.centered else unit)
    model = scaling.to_model(unit)
    assert isinstance(model, np.ndarray) and model.dtype == np.float32
    np.testing.assert_allclose(model, expected, atol=1e-5)
    np.testing.assert_allclose(scaling.to_model(tf.constant(unit)).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(scaling.from_model(model), unit, atol=1e-5)
    np.testing.assert_allclose(scaling.from_model(tf.constant(model)).numpy(), unit, atol=1e-5)
    beyond = scaling.from_model(np.array([-50.0, 50.0], np.float32))  # samplers step outside: clipped to [0, 1]
    np.testing.assert_array_equal(beyond, [0.0, 1.0])
    if alpha:
        with pytest.raises(UserError, match="logits"):
            scaling.offset
    else:
        assert scaling.offset == (0.5 if scaling.centered else 0.0)


def test_basis_units_are_the_training_units_and_refuse_logits():
    from core.config import load_config
    from separation.separate import model_scaling

    config = load_config("configs/pretrained_ncsn.yml")
    assert model_scaling(config, "ncsn").offset == 0.0 and model_scaling(config, "glow").offset == 0.5
    assert model_scaling(config, "glow").dequantization_noise == 0.0
    with pytest.raises(UserError, match="use_logit: true"):
        model_scaling(dataclasses.replace(config, use_logit=True, alpha=0.05), "ncsn")


def test_power_records_scale_by_the_ceiling(tmp_path):
    written = make_source_dataset(tmp_path / "piano", n_train_files=1, scale="power")
    data = dl.load_source_data(tmp_path / "piano", 5, dl.Scaling("power"), SHAPE)
    np.testing.assert_allclose(collect(data.test)[..., 0], written["test"] / 100.0, rtol=1e-5, atol=1e-12)


def test_bad_datasets_give_clear_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        dl.list_tfrecords(tmp_path / "nope", "train")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(UserError, match="holds no .tfrecord"):
        dl.list_tfrecords(tmp_path / "empty", "train")
    with pytest.raises(UserError, match="test does not exist"):
        dl.list_tfrecords(tmp_path / "empty", "test")

    make_source_dataset(tmp_path / "piano")
    with pytest.raises(UserError, match=r"shape \(96, 64\).*expects \(96, 94\)"):
        dl.load_source_data(tmp_path / "piano", 4, dl.Scaling("dB"), (96, 94))
    with pytest.raises(UserError, match="holds dB spectrograms"):
        dl.load_source_data(tmp_path / "piano", 4, dl.Scaling("power"), SHAPE)

    with pytest.raises(UserError, match=r"values in \[-100, 20\], outside the range \[-80, 20\]"):
        dl.load_source_data(tmp_path / "piano", 4, dl.Scaling("dB", params=spectral.SpectrogramParams(db_min=-80.0)), SHAPE)

    broken = tmp_path / "piano" / "train" / "part1.tfrecord"
    broken.write_bytes(broken.read_bytes()[:-500])
    with pytest.raises(UserError, match="part1.tfrecord is truncated or corrupt"):
        dl.load_source_data(tmp_path / "piano", 4, dl.Scaling("dB"), SHAPE)


def test_pipeline_under_a_mirrored_strategy_with_two_cpus(tmp_path):
    make_source_dataset(tmp_path / "piano", per_file=8)
    script = tmp_path / "distributed.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(dl.__file__.rsplit('/datasets/', 1)[0])!r})
        import core
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        from datasets import data_loader as dl
        data = dl.load_source_data({str(tmp_path / 'piano')!r}, 8, dl.Scaling("dB"), (96, 64), strategy=strategy)

        @tf.function
        def step(batch):
            per_replica = strategy.run(lambda x: tf.reduce_sum(tf.ones_like(x[..., 0, 0, 0])), args=(batch,))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        seen = sum(int(step(batch)) for batch in data.train)
        replicas = {{len(batch.values) for batch in data.train}}
        print("SEEN", seen, "REPLICAS", sorted(replicas))
    """))
    proc = run_script(str(script))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SEEN 24 REPLICAS [2]" in proc.stdout


# ------------------------------------------------------------------------------------------------------- songs

def make_song(folder, seconds=5.0, sources=("piano", "violin")):
    audio = {name: music_like(seconds, seed=index, f0=110.0 * (index + 1)) for index, name in enumerate(sources)}
    for name, waveform in audio.items():
        write_wav(folder / f"{name}.wav", waveform)
    mix = sum(audio.values())
    write_wav(folder / "mix.wav", mix)
    return mix, audio


def test_load_song_pads_keeps_length_and_matches_direct_computation(tmp_path):
    mix, audio = make_song(tmp_path / "song", seconds=5.0)
    song = dl.load_song(tmp_path / "song")
    assert song.name == "song" and song.n_samples == mix.size == 80000
    assert song.n_segments == 3 and song.padding == 3 * 32640 - 80000
    assert song.mix_mel.shape == (3, 96, 64) and song.stft_mixture.shape == (3, 1025, 64)
    assert set(song.sources_mel) == {"piano", "violin"}
    np.testing.assert_array_equal(song.mix_audio, mix)
    expected = spectral.mel_spectrogram_segments(spectral.segment_audio(audio["violin"], 32640), PARAMS, "dB")
    np.testing.assert_array_equal(song.sources_mel["violin"], expected)
    # the mixture's STFT is the STFT of the padded segments: inverting it gives back the song
    import librosa
    recovered = np.concatenate([librosa.istft(s, hop_length=512, n_fft=2048, length=32640)
                                for s in song.stft_mixture])[: song.n_samples]
    np.testing.assert_allclose(recovered, mix, atol=1e-4)


def test_load_song_without_sources_and_n_segments(tmp_path):
    write_wav(tmp_path / "song" / "mix.wav", music_like(9.0))
    song = dl.load_song(tmp_path / "song", n_segments=2)
    assert song.sources_mel == {} and song.n_segments == 2 and song.n_samples == 2 * 32640


def test_load_song_fixes_rates_channels_and_lengths_with_warnings(tmp_path, capsys):
    folder = tmp_path / "song"
    stereo = np.stack([music_like(3.0, seed=1, sr=44100), music_like(3.0, seed=2, sr=44100)], axis=1)
    write_wav(folder / "mix.wav", stereo, sr=44100)
    write_wav(folder / "piano.wav", music_like(2.0, seed=3))
    write_wav(folder / "violin.wav", music_like(4.0, seed=4))
    song = dl.load_song(folder)
    err = capsys.readouterr().err
    assert "downmixed to mono" in err and "resampled from 44100 Hz" in err
    assert "padded with silence" in err and "trimmed" in err
    assert song.n_samples == 48000
    assert all(audio.shape == (48000,) for audio in song.sources_audio.values())
    assert np.all(song.sources_audio["piano"][32000:] == 0)


def test_short_silent_song_is_padded_not_nan(tmp_path, capsys):
    write_wav(tmp_path / "song" / "mix.wav", np.zeros(SR // 2, np.float32))
    song = dl.load_song(tmp_path / "song")
    assert "shorter than one segment" in capsys.readouterr().err
    assert song.n_segments == 1 and np.all(song.mix_mel == -100.0)


def test_bad_song_folders(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        dl.load_song(tmp_path / "missing")
    (tmp_path / "song").mkdir()
    with pytest.raises(UserError, match="has no mix.wav"):
        dl.load_song(tmp_path / "song")
    (tmp_path / "song" / "mix.wav").write_text("not audio")
    with pytest.raises(UserError, match="not an audio file"):
        dl.load_song(tmp_path / "song")


def test_toy_images_through_tensorflow_datasets_without_network():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):  # tfds' own offline stand-in for the real download
        data = dl.load_image_data("mnist", 16, dl.Scaling(centered=True), seed=0)
        images = collect(data.train)
        assert images.shape == (40, 28, 28, 1)
        assert images.min() >= -0.5 and images.max() <= 0.5
        # bin centres: (pixel + 0.5) / 256 - 0.5 for integer pixels
        pixels = (images + 0.5) * 256 - 0.5
        np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)
        noisy = collect(dl.load_image_data("cifar10", 8, dl.Scaling(dequantization_noise=1.0), seed=0).test)
        assert noisy.shape[1:] == (32, 32, 3) and 0 <= noisy.min() and noisy.max() <= 1
        assert np.abs((noisy * 256) - np.round(noisy * 256)).max() > 0.1  # spread inside the bins
    with pytest.raises(UserError, match="unknown image dataset"):
        dl.load_image_data("svhn", 8, dl.Scaling())


def test_toy_test_images_for_separation_and_offline_image_files(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        images = dl.load_test_images("mnist", 10)
        assert images.shape == (10, 28, 28, 1) and images.dtype == np.float32
        pixels = images * 256 - 0.5
        np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)
        with pytest.raises(UserError, match="12 test images, 20 are needed"):
            dl.load_test_images("mnist", 20)

    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (20, 6, 5), dtype=np.uint8), rng.integers(0, 256, (4, 6, 5), dtype=np.uint8)
    path = tmp_path / "images.npz"
    np.savez(path, train=train, test=test)
    assert dl.is_image_dataset(str(path)) and dl.image_shape(str(path)) == (6, 5, 1)
    np.testing.assert_allclose(dl.load_test_images(str(path), 4)[..., 0], (test + 0.5) / 256, atol=1e-7)
    data = dl.load_image_data(str(path), 8, dl.Scaling(), seed=0)
    assert data.n_train == 20 and collect(data.train).shape == (20, 6, 5, 1)
    np.savez(path, train=train)
    with pytest.raises(UserError, match="no test array"):
        dl.read_image_file(path)
    np.savez(path, train=train, test=rng.integers(0, 256, (4, 6, 6)))
    with pytest.raises(UserError, match="same shape"):
        dl.read_image_file(path)
    with pytest.raises(UserError, match="does not exist"):
        dl.read_image_file(tmp_path / "none.npz")


# ------------------------------------------------------------------------------------ spectrogram augmentation

def test_augmentation_is_a_bounded_smooth_curve_plus_gain_and_keeps_the_floor():
    from core import import_tensorflow

    tf = import_tensorflow()
    rng = np.random.default_rng(0)
    spectrograms = rng.uniform(-60, 0, (16, *SHAPE)).astype(np.float32)
    spectrograms[:, :, :5] = -100.0                                  # silent frames stay silent
    augment = dl.SpectrogramAugment(gain_db=3.0, tilt_db=4.0)
    out = augment(tf.constant(spectrograms), "dB", seed=1).numpy()
    assert out.shape == spectrograms.shape and np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[:, :, :5], -100.0)
    change = out[:, :, 5:] - spectrograms[:, :, 5:]                  # no clipping here: inputs are in [-60, 0]
    # one curve per spectrogram: the same change in every frame of a band
    np.testing.assert_allclose(change, np.repeat(change[:, :, :1], change.shape[2], axis=2), atol=1e-4)
    curve = change[:, :, 0]
    assert np.all(np.abs(curve) <= 3.0 + 4.0 + 1e-4)
    # smooth: a sum of cosines of order <= 4 over 96 bands moves by at most pi * 4 * 4 / 95 dB per band
    # (|d/dm sum a_k cos(pi k m)| <= sum |a_k| pi k), far below what bin-to-bin noise would
    assert np.max(np.abs(np.diff(curve, axis=1))) <= np.pi * 4 * (4.0 / 4) * 4 / 95 + 1e-4
    assert np.std(curve.mean(axis=1)) > 0.3 and np.std(curve.std(axis=1)) > 0.05    # drawn per spectrogram
    loud = np.full((2, *SHAPE), 19.0, np.float32)                   # the result stays in the dB range
    assert np.max(augment(tf.constant(loud), "dB", seed=2).numpy()) <= 20.0
    power = spectral.db_to_power(spectrograms).astype(np.float32)
    out_power = augment(tf.constant(power), "power", seed=1).numpy()
    np.testing.assert_array_equal(out_power[:, :, :5], power[:, :, :5])
    change_power = 10 * np.log10(out_power[:, :, 5:] / power[:, :, 5:])     # a power record: the same in dB
    np.testing.assert_allclose(change_power, np.repeat(change_power[:, :, :1], change.shape[2], axis=2), atol=1e-3)
    assert np.all(np.abs(change_power) <= 7.0 + 1e-3)


def test_resonances_are_narrow_gaussian_bumps_drawn_on_their_own_stream():
    from core import import_tensorflow

    tf = import_tensorflow()
    spectrograms = np.random.default_rng(1).uniform(-60, 0, (32, *SHAPE)).astype(np.float32)
    key = tf.constant(7, tf.int64)
    plain = dl.SpectrogramAugment(gain_db=3.0, tilt_db=4.0)
    one = dl.SpectrogramAugment(gain_db=3.0, tilt_db=4.0, peak_db=6.0, n_peaks=1)
    three = dl.SpectrogramAugment(gain_db=3.0, tilt_db=4.0, peak_db=6.0)
    before = plain(tf.constant(spectrograms), "dB", key=key).numpy()
    bump = (one(tf.constant(spectrograms), "dB", key=key).numpy() - before)[:, :, 0]    # gain and curve: same draws
    # one resonance b exp(-(m - c)^2 / (2 w^2)): log|bump| is a parabola in m with m^2 coefficient -1 / (2 w^2)
    m = np.arange(SHAPE[0], dtype=np.float64)
    for row in bump:
        assert 0 < np.max(np.abs(row)) <= 6.0 + 1e-4 and (np.all(row >= -1e-4) or np.all(row <= 1e-4))
        fit = np.abs(row) > 0.05                                     # float32 resolution: the bump's core only
        if fit.sum() < 4:                                            # a tiny height: too few bands to fit
            continue
        coeffs = np.polyfit(m[fit], np.log(np.abs(row[fit])), 2)
        assert np.max(np.abs(np.polyval(coeffs, m[fit]) - np.log(np.abs(row[fit])))) < 0.05
        assert 1.0 - 0.05 <= (-0.5 / coeffs[0]) ** 0.5 <= 3.0 + 0.05
    change = three(tf.constant(spectrograms), "dB", key=key).numpy() - before
    bumps = change[:, :, 0]
    assert np.all(np.abs(bumps) <= 3 * 6.0 + 1e-4) and np.std(bumps) > 0.5
    # narrow: the sum exceeds 0.6 dB only where one bump exceeds 0.2 dB, within 3 sqrt(2 ln 30) = 7.8 bands of its
    # centre (16 bands each); a smooth curve over all 96 bands would not
    assert np.all((np.abs(bumps) > 0.6).sum(axis=1) <= 3 * 16)
    np.testing.assert_allclose(change, np.repeat(bumps[:, :, None], SHAPE[1], axis=2), atol=1e-4)  # every frame


def test_augmentation_applies_to_training_batches_only(tmp_path):
    written = make_source_dataset(tmp_path / "piano")
    augment = dl.SpectrogramAugment(gain_db=6.0, tilt_db=6.0, peak_db=6.0)
    data = dl.load_source_data(tmp_path / "piano", batch_size=7, scaling=dl.Scaling("dB"), shape=SHAPE, seed=1,
                               augment=augment)
    test = collect(data.test)
    np.testing.assert_allclose(test[..., 0], (written["test"] + 100.0) / 120.0, atol=1e-6)     # off at test time
    train = collect(data.train)
    assert train.shape == (30, 96, 64, 1) and train.min() >= 0.0 and train.max() <= 1.0
    plain = sort_rows((written["train"] + 100.0) / 120.0)
    assert not np.allclose(sort_rows(train[..., 0]), plain, atol=1e-3)
    assert not np.array_equal(train, collect(data.train))          # drawn anew every epoch


def test_several_dataset_folders_are_pooled(tmp_path):
    first = make_source_dataset(tmp_path / "a" / "piano", n_train_files=1, n_test_files=1, per_file=5, seed=0)
    second = make_source_dataset(tmp_path / "b" / "piano", n_train_files=2, n_test_files=1, per_file=5, seed=1)
    data = dl.load_source_data([tmp_path / "a" / "piano", tmp_path / "b" / "piano"], batch_size=4,
                               scaling=dl.Scaling("dB"), shape=SHAPE, seed=0)
    assert (data.n_train, data.n_test) == (15, 10)
    expected = np.concatenate([first["train"], second["train"]])
    np.testing.assert_allclose(sort_rows(collect(data.train)[..., 0]), sort_rows((expected + 100) / 120), atol=1e-6)
