"""The README's main command (run_example.py), as CI runs it: it must not rot."""
from __future__ import annotations

from conftest import assert_one_line_error, run_script


def test_run_example_builds_data_spectrograms_and_figure(tmp_path):
    proc = run_script("run_example.py", "--output", str(tmp_path / "example"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    example = tmp_path / "example"
    assert (example / "example_song.png").stat().st_size > 10_000
    assert list((example / "open_duos" / "tfrecords" / "piano" / "train").glob("*.tfrecord"))
    test_songs = list((example / "open_duos" / "songs" / "test").iterdir())
    assert test_songs and all((song / "mix.wav").is_file() for song in test_songs)
    assert list((example / "spectrograms").rglob("mix.npy"))
    assert "example done" in proc.stdout
    again = run_script("run_example.py", "--output", str(example), timeout=600)  # re-running resumes
    assert again.returncode == 0 and "0 built, 8 kept" in again.stdout, again.stdout[-2000:]


def test_run_example_rejects_too_few_pieces(tmp_path):
    assert_one_line_error(run_script("run_example.py", "--output", str(tmp_path), "--pieces", "1"), "--pieces")
