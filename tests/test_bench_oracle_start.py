"""The search-or-prior benchmark in a reduced form (one synthetic 4 s excerpt, one Langevin step at the last level),
so that it cannot rot, and its one-line errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, assert_one_line_error, music_like, run_script, write_wav

SCRIPT = "benchmarks/bench_oracle_start.py"


def make_song(folder):
    piano, violin = music_like(4.2, seed=1, f0=110.0), music_like(4.2, seed=2, f0=660.0)
    for name, audio in (("piano", piano), ("violin", violin), ("mix", piano + violin)):
        write_wav(folder / f"{name}.wav", audio)
    return folder


@pytest.mark.slow
def test_reduced_benchmark_scores_both_starts_and_the_truth(tmp_path):
    song, out = make_song(tmp_path / "song"), tmp_path / "out"
    # one step at the last level (start noise sigma_L = 0.01, one step of 2e-4 at temperature 0.1): the truth stays
    args = (SCRIPT, str(song), "--priors", str(ROOT / "pretrained"), "--start_level", "9", "--basis_levels", "1",
            "--T", "1", "--output", str(out), "--no_progress")
    proc = run_script(*args, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = pd.read_csv(out / "oracle_start.csv").set_index("method")
    assert list(table.index) == ["mixture", "truth start", "true mel", "mixture baseline", "IRM"]
    assert np.isfinite(table[["piano", "violin"]].to_numpy()).all()
    for name in ("piano", "violin"):
        # the true mel through the Wiener filter is far above half the mixture
        assert table.loc["true mel", name] > table.loc["mixture baseline", name] + 5
        # one small step keeps a start from the truth within 1 dB of it, and cannot take the mixture's equal share
        # near it: the two starts are told apart
        assert table.loc["truth start", name] == pytest.approx(table.loc["true mel", name], abs=1.0)
        assert table.loc["mixture", name] < table.loc["true mel", name] - 5
    assert "truth start" in proc.stdout
    # re-running skips what is done and tables the same numbers
    stamp = (out / "truth_start" / "song" / "piano.wav").stat().st_mtime_ns
    again = run_script(*args)
    assert again.returncode == 0, again.stderr
    assert (out / "truth_start" / "song" / "piano.wav").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(pd.read_csv(out / "oracle_start.csv").set_index("method"), table)
    # another sampler into the same output would mix two runs' results: refused, naming the difference
    assert_one_line_error(run_script(*args, "--T", "2"), "T 1 -> 2")


def test_bad_input_is_a_one_line_error(tmp_path):
    song = make_song(tmp_path / "song")
    (song / "violin.wav").unlink()
    assert_one_line_error(run_script(SCRIPT, str(song), "--output", str(tmp_path / "o")), "violin.wav")
    other = make_song(tmp_path / "other" / "song")
    assert_one_line_error(run_script(SCRIPT, str(other), str(other.parent / "." / "song"), "--output",
                                     str(tmp_path / "o")), "several songs are named song")
    assert_one_line_error(run_script(SCRIPT, str(tmp_path / "song"), "--priors", str(tmp_path),
                                     "--output", str(tmp_path / "o")), "not a prior folder")
