"""The sampler benchmark in a reduced form (one short training piece, two tiny settings), so that it cannot rot: it
renders, separates with the shipped priors under each setting, scores, tables and plots."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, assert_one_line_error, run_script

SCRIPT = "benchmarks/bench_sampler.py"
COMMON = ["--priors", str(ROOT / "pretrained"), "--kinds", "chorales", "--songs_per_kind", "1", "--seconds", "2.5",
          "--setting", "one=T=1,basis_levels=2", "two=T=1,basis_levels=2,n_chains=2,denoise=true",
          "--only", "one", "two", "--no_progress"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs fluidsynth: ./setup.sh")
def test_reduced_benchmark_separates_each_setting_and_tables(tmp_path):
    out = tmp_path / "bench"
    proc = run_script(SCRIPT, *COMMON, "--output", str(out), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = pd.read_csv(out / "sampler_train.csv")
    assert list(rows["setting"]) == ["one", "two"] and list(rows["songs"]) == [1, 1]
    # evaluations per prior and segment: n_chains * (levels * T + denoise)
    assert list(rows["evaluations"]) == [2, 2 * (2 * 1 + 1)]
    for column in ("rtf_basis", "rtf_total", "SDR_piano", "SDR_violin", "SAR_piano", "SAR_violin",
                   "mixture_SDR_piano", "mixture_SDR_violin"):
        assert np.all(np.isfinite(rows[column])), column
    assert np.all(rows["rtf_basis"] > 0) and np.all(rows["rtf_total"] >= rows["rtf_basis"])
    assert (out / "sampler_train.png").stat().st_size > 10_000
    assert "mixture baseline" in proc.stdout
    # re-running separates nothing again: the timings stay those of the first run
    again = run_script(SCRIPT, *COMMON, "--output", str(out), timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    pd.testing.assert_frame_equal(pd.read_csv(out / "sampler_train.csv"), rows)


def test_bad_settings_are_one_line_errors(tmp_path):
    assert_one_line_error(run_script(SCRIPT, "--setting", "x", "--output", str(tmp_path)), "NAME=key=value")
    assert_one_line_error(run_script(SCRIPT, "--setting", "x=n_filters=3", "--output", str(tmp_path)),
                          "not a sampler key")
    assert_one_line_error(run_script(SCRIPT, "--only", "nosuch", "--output", str(tmp_path)), "unknown setting")
    assert_one_line_error(run_script(SCRIPT, "--priors", str(tmp_path), "--output", str(tmp_path)),
                          "not a prior folder")
