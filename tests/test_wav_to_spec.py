"""datasets/wav_to_spec.py end to end, as a user runs it."""
from __future__ import annotations

import numpy as np

from conftest import SR, assert_one_line_error, music_like, run_script, write_wav
from core import spectral
from datasets import preprocessing as pp

SCRIPT = "datasets/wav_to_spec.py"


def make_tree(root):
    write_wav(root / "piano" / "a.wav", music_like(5.0, seed=1))
    write_wav(root / "piano" / "deeper" / "b.flac", music_like(2.5, seed=2), subtype="PCM_16")
    write_wav(root / "violin" / "c.wav", music_like(4.1, seed=3))
    (root / "notes.txt").write_text("not audio, not an audio extension: ignored")


def test_mirrors_the_tree_and_equals_the_library(tmp_path):
    make_tree(tmp_path / "in")
    proc = run_script(SCRIPT, str(tmp_path / "in"), str(tmp_path / "out"), "--use_dB", "--tfrecords", "--npy")
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert "3 files, 8 segments of 96x64 (dB)" in summary and "0 skipped" in summary and "audio-s/s" in summary
    for relative, n_segments in (("piano/a", 3), ("piano/deeper/b", 2), ("violin/c", 3)):
        source = next((tmp_path / "in").glob(relative + ".*"))
        audio, _ = pp.load_audio(source)
        expected = spectral.audio_to_mel_segments(audio, spectral.SpectrogramParams(), "dB")
        stored = np.load(tmp_path / "out" / f"{relative}.npy")
        assert stored.shape == (n_segments, 96, 64)
        np.testing.assert_array_equal(stored, expected)
        spectrograms, records = pp.read_tfrecord(tmp_path / "out" / f"{relative}.tfrecord")
        np.testing.assert_array_equal(spectrograms, expected)
        assert records[0]["source_file"] == str(source)


def test_power_is_the_default_and_flags_change_parameters(tmp_path):
    write_wav(tmp_path / "in.wav", music_like(4.0))
    proc = run_script(SCRIPT, str(tmp_path / "in.wav"), str(tmp_path / "out"), "--n_mels", "64", "--fmax", "8000")
    assert proc.returncode == 0, proc.stderr
    stored = np.load(tmp_path / "out" / "in.npy")
    audio, _ = pp.load_audio(tmp_path / "in.wav")
    expected = spectral.audio_to_mel_segments(audio, spectral.SpectrogramParams(n_mels=64, fmax=8000.0), "power")
    np.testing.assert_allclose(stored, expected)


def test_refuses_existing_results_unless_overwrite(tmp_path):
    write_wav(tmp_path / "in" / "a.wav", music_like(3.0))
    first = run_script(SCRIPT, str(tmp_path / "in"), str(tmp_path / "out"), "--tfrecords")
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "out" / "a.tfrecord").read_bytes()
    again = run_script(SCRIPT, str(tmp_path / "in"), str(tmp_path / "out"), "--tfrecords")
    assert_one_line_error(again, "already holds results", "--overwrite")
    assert (tmp_path / "out" / "a.tfrecord").read_bytes() == before
    forced = run_script(SCRIPT, str(tmp_path / "in"), str(tmp_path / "out"), "--tfrecords", "--overwrite")
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "in" / "a.wav").exists()


def test_bad_files_are_skipped_with_warnings_and_exit_1(tmp_path):
    write_wav(tmp_path / "in" / "good.wav", music_like(3.0))
    write_wav(tmp_path / "in" / "short.wav", music_like(1.0))
    write_wav(tmp_path / "in" / "silent.wav", np.zeros(3 * SR, np.float32))
    (tmp_path / "in" / "fake.wav").write_text("plain text")
    proc = run_script(SCRIPT, str(tmp_path / "in"), str(tmp_path / "out"), "--use_dB")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 2
    assert any("short.wav" in w and "shorter than one segment" in w for w in warnings)
    assert any("fake.wav" in w and "not an audio file" in w for w in warnings)
    silent = np.load(tmp_path / "out" / "silent.npy")
    assert np.all(silent == -100.0)
    assert "2 files" in proc.stdout and "2 skipped" in proc.stdout


def test_input_problems_are_one_line_errors(tmp_path):
    assert_one_line_error(run_script(SCRIPT, str(tmp_path / "missing"), str(tmp_path / "out")), "does not exist")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_script(SCRIPT, str(tmp_path / "empty"), str(tmp_path / "out")), "no audio files")
    (tmp_path / "only_bad").mkdir()
    (tmp_path / "only_bad" / "x.wav").write_text("nope")
    assert_one_line_error(run_script(SCRIPT, str(tmp_path / "only_bad"), str(tmp_path / "out2")),
                          "could be converted")
    write_wav(tmp_path / "ok.wav", music_like(3.0))
    (tmp_path / "a_file").write_text("")
    assert_one_line_error(run_script(SCRIPT, str(tmp_path / "ok.wav"), str(tmp_path / "a_file")), "is a file")
    assert_one_line_error(run_script(SCRIPT, str(tmp_path / "ok.wav"), str(tmp_path / "o"), "--fmin", "9000"),
                          "fmin")
