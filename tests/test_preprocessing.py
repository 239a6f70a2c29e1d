"""Spectrograms against librosa, audio loading, scaling and TFRecord storage."""
from __future__ import annotations

import librosa
import numpy as np
import soundfile as sf
import pytest

from conftest import SR, music_like, write_wav
from core import spectral
from core.errors import UserError
from datasets import preprocessing as pp

PARAMS = spectral.SpectrogramParams()


def librosa_mel(segment: np.ndarray, scale: str) -> np.ndarray:
    """The reference: librosa on one segment with the seed's parameters, computed in float64."""
    power = librosa.feature.melspectrogram(y=segment.astype(np.float64), sr=SR, n_fft=2048, hop_length=512,
                                           n_mels=96, fmin=125, fmax=7600, pad_mode="reflect", power=2.0)
    if scale == "dB":
        return np.clip(librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None), -100, 20)
    return np.clip(power, 1e-10, 100.0)


def test_defaults_are_the_seeds():
    assert (PARAMS.sample_rate, PARAMS.segment_samples, PARAMS.n_fft, PARAMS.hop_length) == (16000, 32640, 2048, 512)
    assert (PARAMS.n_mels, PARAMS.fmin, PARAMS.fmax, PARAMS.db_min, PARAMS.db_max) == (96, 125, 7600, -100, 20)
    assert PARAMS.shape == (96, 64)
    assert PARAMS.segment_seconds == pytest.approx(2.04)


@pytest.mark.parametrize("scale", ["dB", "power"])
def test_mel_segments_equal_librosa(scale):
    audio = music_like(7.0, seed=3)
    audio[SR:2 * SR] = 0.0  # a silent stretch: bins at the -100 dB floor
    segments = spectral.segment_audio(audio, PARAMS.segment_samples)
    mel = spectral.mel_spectrogram_segments(segments, PARAMS, scale)
    assert mel.shape == (4, 96, 64) and mel.dtype == np.float32
    reference = np.stack([librosa_mel(segment, scale) for segment in segments])
    if scale == "dB":
        above_floor = reference > -100
        assert above_floor.mean() > 0.5
        assert np.abs(mel - reference)[above_floor].max() < 0.01
        assert np.all(mel[~above_floor] == -100)
    else:
        np.testing.assert_allclose(mel, reference, rtol=1e-3, atol=1e-12)  # 0.01 dB is 0.23 %


def test_stft_equals_librosa_stft():
    segments = spectral.segment_audio(music_like(4.5, seed=5), PARAMS.segment_samples)
    stft = spectral.stft_segments(segments, PARAMS)
    assert stft.shape == (3, 1025, 64)
    for segment, ours in zip(segments, stft):
        theirs = librosa.stft(segment.astype(np.float64), n_fft=2048, hop_length=512, pad_mode="reflect")
        np.testing.assert_allclose(ours, theirs, atol=1e-9)
    _, stft64 = spectral.mel_spectrogram_segments(segments, PARAMS, "dB", return_stft=True)
    assert stft64.dtype == np.complex64 and stft64.shape == (3, 1025, 64)


def test_segment_audio_pads_and_keeps_length():
    audio = np.arange(PARAMS.segment_samples * 2 + 5, dtype=np.float32)
    segments = spectral.segment_audio(audio, PARAMS.segment_samples)
    assert segments.shape == (3, PARAMS.segment_samples)
    np.testing.assert_array_equal(segments.reshape(-1)[: audio.size], audio)
    assert np.all(segments.reshape(-1)[audio.size:] == 0)
    assert spectral.segment_audio(np.ones(10, np.float32), 100).shape == (1, 100)


def test_silence_is_the_floor_not_inf():
    mel = spectral.audio_to_mel_segments(np.zeros(PARAMS.segment_samples, np.float32), PARAMS, "dB")
    assert np.all(mel == PARAMS.db_min)
    power = spectral.audio_to_mel_segments(np.zeros(PARAMS.segment_samples, np.float32), PARAMS, "power")
    assert np.all(np.isfinite(power)) and np.all(power == pytest.approx(1e-10))


def test_loud_input_is_clipped_at_the_ceiling():
    loud = 1000.0 * music_like(2.04, seed=1)
    mel = spectral.audio_to_mel_segments(loud, PARAMS, "dB")
    assert mel.max() == PARAMS.db_max


def test_load_audio_downmixes_and_resamples(tmp_path):
    left, right = music_like(3.0, seed=1), music_like(3.0, seed=2)
    write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1))
    audio, info = pp.load_audio(tmp_path / "stereo.wav")
    np.testing.assert_allclose(audio, (left + right) / 2, atol=1e-7)
    assert (info.original_channels, info.original_rate) == (2, SR)

    t = np.arange(44100 * 2) / 44100
    write_wav(tmp_path / "tone.flac", (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), sr=44100,
              subtype="PCM_24")
    audio, info = pp.load_audio(tmp_path / "tone.flac")
    assert info.original_rate == 44100 and audio.shape == (32000,)
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    assert np.fft.rfftfreq(audio.size, 1 / SR)[spectrum.argmax()] == pytest.approx(1000, abs=1)


def test_load_audio_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        pp.load_audio(tmp_path / "missing.wav")
    (tmp_path / "text.wav").write_text("this is not audio")
    with pytest.raises(UserError, match="not an audio file"):
        pp.load_audio(tmp_path / "text.wav")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no audio files"):
        pp.find_audio_files(empty)
    with pytest.raises(UserError, match="does not exist"):
        pp.find_audio_files(tmp_path / "missing_folder")


def test_unit_scaling_round_trip():
    db = np.array([-100.0, -40.0, 20.0])
    np.testing.assert_allclose(pp.to_unit(db, "dB"), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(pp.from_unit(pp.to_unit(db, "dB"), "dB"), db)
    power = np.array([1e-10, 1.0, 100.0])
    np.testing.assert_allclose(pp.to_unit(power, "power"), [1e-12, 0.01, 1.0])
    with pytest.raises(UserError):
        pp.to_unit(db, "amplitude")


def test_tfrecord_round_trip_keeps_traceability(tmp_path):
    mel = spectral.audio_to_mel_segments(music_like(5.0), PARAMS, "dB")
    path = tmp_path / "song.tfrecord"
    pp.write_tfrecord(path, mel, source_file="songs/song.wav", scale="dB")
    spectrograms, records = pp.read_tfrecord(path)
    np.testing.assert_array_equal(spectrograms, mel)
    assert [r["segment_index"] for r in records] == [0, 1, 2]
    assert {r["source_file"] for r in records} == {"songs/song.wav"}
    assert {r["scale"] for r in records} == {"dB"}
    assert not list(tmp_path.glob("*.partial"))


def test_truncated_tfrecord_is_named(tmp_path):
    mel = spectral.audio_to_mel_segments(music_like(5.0), PARAMS, "dB")
    path = tmp_path / "broken.tfrecord"
    pp.write_tfrecord(path, mel, source_file="x.wav", scale="dB")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(UserError, match="broken.tfrecord is truncated or corrupt"):
        pp.read_tfrecord(path)
    corrupt = bytearray(data)
    corrupt[20:40] = b"\x00" * 20
    path.write_bytes(bytes(corrupt))
    with pytest.raises(UserError, match="broken.tfrecord"):
        pp.read_tfrecord(path)


def test_bad_spectrogram_params_are_one_line_errors():
    with pytest.raises(UserError, match="fmin"):
        spectral.SpectrogramParams(fmin=9000.0)
    with pytest.raises(UserError, match="pad_mode"):
        spectral.SpectrogramParams(pad_mode="wrap")


def test_write_estimate_clips_with_a_warning_naming_the_file(tmp_path, capsys):
    loud = np.array([0.0, 0.5, -1.5, 1.25], dtype=np.float32)
    pp.write_estimate(tmp_path / "loud.wav", loud, 16000)
    err = capsys.readouterr().err
    assert "loud.wav peaks at 1.50: clipped" in err
    written, rate = sf.read(tmp_path / "loud.wav")
    assert rate == 16000 and np.abs(written).max() <= 1.0 and written[1] == pytest.approx(0.5, abs=1e-4)
    pp.write_estimate(tmp_path / "quiet.wav", loud / 2, 16000)
    assert capsys.readouterr().err == ""  # within [-1, 1]: written as it is, no warning
    np.testing.assert_allclose(sf.read(tmp_path / "quiet.wav")[0], loud / 2, atol=1 / 32768)
