"""The generalisation benchmark in a reduced form (one short test piece, one timbre, one Langevin step per level),
so that it cannot rot: it renders, separates with the shipped priors, scores and tables."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, run_script
from datasets import timbres

SCRIPT = "benchmarks/bench_generalisation.py"
HAVE_CSOUND = shutil.which("fluidsynth") is not None and Path(timbres.SOUNDFONTS["csound"][0]).is_file()


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_CSOUND, reason="needs fluidsynth and csound-soundfont: ./setup.sh")
def test_reduced_benchmark_renders_separates_and_tables(tmp_path):
    out = tmp_path / "bench"
    proc = run_script(SCRIPT, "--priors", f"shipped={ROOT / 'pretrained'}", "--pieces", "bach/bwv108.6",
                      "--timbres", "csound", "--seconds", "2.5", "--T", "1", "--output", str(out), "--no_progress",
                      timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((out / "generalisation.json").read_text())
    assert [(r["priors"], r["kind"], r["timbre"], r["songs"]) for r in rows] == \
        [("shipped", "chorales", "csound", 1), ("shipped", "all", "csound", 1)]
    row = rows[0]
    for key, value in row.items():
        if key.startswith(("BASIS", "mixture", "IRM", "gain")):
            assert np.isfinite(value), key
    # the oracle is far above returning half the mixture (an independent sanity check of the scoring)
    assert row["IRM_piano"] > row["mixture_piano"] + 5 and row["IRM_violin"] > row["mixture_violin"] + 5
    assert row["gain_piano"] == pytest.approx(row["BASIS_piano"] - row["mixture_piano"])
    song = out / "renders" / "csound" / "songs" / "test" / "bach_bwv108.6"
    assert (song / "mix.wav").is_file() and "gain p/v" in proc.stdout
    # re-running skips what is done: no new separation
    again = run_script(SCRIPT, "--priors", f"shipped={ROOT / 'pretrained'}", "--pieces", "bach/bwv108.6",
                       "--timbres", "csound", "--seconds", "2.5", "--T", "1", "--output", str(out), "--no_progress")
    assert again.returncode == 0 and "done already" in again.stdout + again.stderr
    # --table_only tables what is there, separating nothing (also for a timbre never rendered)
    table = run_script(SCRIPT, "--priors", f"shipped={ROOT / 'pretrained'}", "--pieces", "bach/bwv108.6",
                       "--timbres", "csound", "merlin", "--seconds", "2.5", "--output", str(out), "--table_only")
    assert table.returncode == 0, table.stderr
    assert json.loads((out / "generalisation.json").read_text()) == rows
    assert not (out / "renders" / "merlin").exists()


def test_bad_prior_sets_are_one_line_errors(tmp_path):
    assert_one_line_error(run_script(SCRIPT, "--priors", "pretrained"), "NAME=DIR")
    assert_one_line_error(run_script(SCRIPT, "--priors", f"x={tmp_path}"), "prior folder")
