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
    # the same names with other settings would table the old results as new ones: refused, naming the difference
    base = [SCRIPT, "--priors", f"shipped={ROOT / 'pretrained'}", "--pieces", "bach/bwv108.6", "--timbres", "csound",
            "--output", str(out), "--no_progress"]
    assert_one_line_error(run_script(*base, "--seconds", "2.5", "--T", "2"), "T 1 -> 2")
    assert_one_line_error(run_script(*base, "--seconds", "3", "--T", "1"), "seconds 2.5 -> 3.0")
    # --table_only tables what is there, separating nothing (also for a timbre never rendered)
    table = run_script(SCRIPT, "--priors", f"shipped={ROOT / 'pretrained'}", "--pieces", "bach/bwv108.6",
                       "--timbres", "csound", "merlin", "--seconds", "2.5", "--output", str(out), "--table_only")
    assert table.returncode == 0, table.stderr
    assert json.loads((out / "generalisation.json").read_text()) == rows
    assert not (out / "renders" / "merlin").exists()
    # --windows: consecutive excerpts of one longer render, each scored as a song, in folders of their own
    win = run_script(SCRIPT, "--priors", f"shipped={ROOT / 'pretrained'}", "--pieces", "bach/bwv108.6",
                     "--timbres", "csound", "--seconds", "1.25", "--windows", "2", "--T", "1", "--output", str(out),
                     "--no_progress", timeout=600)
    assert win.returncode == 0, win.stdout + win.stderr
    windows = json.loads((out / "generalisation.json").read_text())
    assert [(r["kind"], r["songs"]) for r in windows] == [("chorales", 2), ("all", 2)]
    assert all(np.isfinite(r["gain_piano"]) and np.isfinite(r["gain_violin"]) for r in windows)
    cut = out / "renders" / "csound_2x1.25s" / "windows" / "test"
    assert sorted(p.name for p in cut.iterdir()) == ["bach_bwv108.6_w1", "bach_bwv108.6_w2"]
    assert (out / "separated" / "shipped" / "csound_2x1.25s" / "bach_bwv108.6_w2").is_dir()


def test_bad_prior_sets_are_one_line_errors(tmp_path):
    assert_one_line_error(run_script(SCRIPT, "--priors", "pretrained"), "NAME=DIR")
    assert_one_line_error(run_script(SCRIPT, "--priors", f"x={tmp_path}"), "prior folder")


def test_effects_conditions_are_named_and_kept_apart():
    bench = load_bench()
    dry, wet = bench.conditions(["csound"], []), bench.conditions(["csound"], [], effects=["default"])
    assert [(c.name, c.effects) for c in dry] == [("csound", "none")]
    assert [(c.name, c.piano, c.violin, c.effects) for c in wet] == [("csound+fx", "csound:0", "csound:40", "default")]
    both = bench.conditions(["csound", "merlin"], [], effects=["none", "default"])
    assert [c.name for c in both] == ["csound", "merlin", "csound+fx", "merlin+fx"]
    assert bench.folder_name("sf:x+fx") == "sf_x_fx" != bench.folder_name("sf:x")


@pytest.mark.skipif(not HAVE_CSOUND, reason="needs fluidsynth and csound-soundfont: ./setup.sh")
def test_effects_render_differs_from_the_dry_one_and_stays_bounded(tmp_path):
    import soundfile as sf

    bench = load_bench()
    pieces = bench.choose_pieces([], 1, ["bach/bwv108.6"])
    mixes = {}
    for condition in bench.conditions(["csound"], [], effects=["none", "default"]):
        [(kind, song)] = bench.render(pieces, condition, 2.5, tmp_path)
        assert kind == "chorales" and song.parent.parent.parent.name == bench.folder_name(condition.name)
        parts = {name: sf.read(song / f"{name}.wav")[0] for name in ("mix", "piano", "violin")}
        for audio in parts.values():
            assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) < 1.0
        n = min(len(a) for a in parts.values())
        np.testing.assert_allclose(parts["mix"][:n], parts["piano"][:n] + parts["violin"][:n], atol=1e-4)
        mixes[condition.effects] = parts["mix"]
    n = min(len(m) for m in mixes.values())
    # the effects change the sound: not the dry render up to a gain
    dry, wet = mixes["none"][:n], mixes["default"][:n]
    residual = wet - dry * np.dot(wet, dry) / np.dot(dry, dry)
    assert np.sum(residual ** 2) > 0.05 * np.sum(wet ** 2)


def test_heldout_summary_compares_with_the_mean_of_the_rows_heard():
    bench = load_bench()
    row = lambda priors, kind, timbre, p, v: {"priors": priors, "kind": kind, "timbre": timbre, "songs": 5,  # noqa: E731
                                              "gain_piano": p, "gain_violin": v}
    rows = [row("lo", "quartets", "fluidr3", 7.0, 7.0), row("lo", "quartets", "csound", 5.0, 6.0),
            row("lo", "quartets", "salamander", 5.5, 6.2), row("lo", "quartets", "fluidr3+fx", 1.0, 1.0),
            row("lo", "quartets", "salamander+fx", 0.0, 3.0), row("lo", "chorales", "salamander", 9.0, 9.0),
            row("new", "quartets", "salamander", 6.0, 6.0)]
    heldout = bench.parse_heldout(["lo=salamander", "lo=salamander+fx"], ["lo", "new"],
                                  ["fluidr3", "csound", "salamander", "fluidr3+fx", "salamander+fx"])
    assert heldout == {"lo": {"salamander", "salamander+fx"}}
    summary = {(r["kind"], r["heldout"]): r for r in bench.heldout_rows(rows, heldout)}
    assert set(summary) == {("quartets", "salamander"), ("quartets", "salamander+fx"), ("chorales", "salamander")}
    dry = summary["quartets", "salamander"]
    # seen = mean of the dry rows fluidr3 (7, 7) and csound (5, 6) = (6, 6.5); the +fx rows are left out
    assert dry["seen"] == "fluidr3 csound"
    assert (dry["seen_piano"], dry["seen_violin"]) == (6.0, 6.5)
    assert dry["gap_piano"] == pytest.approx(-0.5) and dry["gap_violin"] == pytest.approx(-0.3)
    wet = summary["quartets", "salamander+fx"]
    assert wet["seen"] == "fluidr3+fx" and (wet["gap_piano"], wet["gap_violin"]) == (-1.0, 2.0)
    assert np.isnan(summary["chorales", "salamander"]["gap_piano"])      # no seen chorale row
    text = bench.format_heldout(list(summary.values())).splitlines()
    # quartets dry: +5.5 / +6.2 >= +4 (met), gap -0.5 / -0.3 (met); +fx: 0.0 < +4 (missed), gap -1.0 (met)
    assert "met, met" in text[2] and "missed, met" in text[3] and "met, unjudged" in text[4]


def test_bad_heldout_is_a_one_line_error(tmp_path):
    args = ("--priors", f"shipped={ROOT / 'pretrained'}", "--pieces", "bach/bwv108.6", "--timbres", "csound",
            "--output", str(tmp_path))
    assert_one_line_error(run_script(SCRIPT, *args, "--heldout", "shipped=merlin"), "one of the timbre rows")
    assert_one_line_error(run_script(SCRIPT, *args, "--heldout", "other=csound"), "one of --priors")


def load_bench():
    """The benchmark script as a module (registered first: its dataclasses look their module up)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("bench_generalisation", ROOT / SCRIPT)
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


def test_seeds_average_basis_per_song_and_leave_the_baselines_alone():
    bench = load_bench()

    class Medians:                      # what finished_scores holds per method: Scores with .medians()
        def __init__(self, piano, violin):
            self.values = {"piano": {"SDR": piano}, "violin": {"SDR": violin}}

        def medians(self):
            return self.values

    seed0 = {"a": {"BASIS": Medians(8.0, 6.0), "mixture": Medians(2.0, 3.0), "IRM": Medians(15.0, 16.0)},
             "b": {"BASIS": Medians(4.0, 4.0), "mixture": Medians(1.0, 1.0), "IRM": Medians(10.0, 10.0)}}
    seed1 = {"a": {"BASIS": Medians(6.0, 2.0), "mixture": Medians(2.0, 3.0), "IRM": Medians(15.0, 16.0)},
             "b": {}}                   # seed 1 has not scored song b yet
    sdrs = bench.song_sdrs([seed0, seed1])
    assert sdrs["a"] == {"BASIS": {"piano": 7.0, "violin": 4.0}, "mixture": {"piano": 2.0, "violin": 3.0},
                         "IRM": {"piano": 15.0, "violin": 16.0}}
    assert sdrs["b"] == {}              # counted only once every seed has it
    rows = bench.table_rows({"lo": {"csound": sdrs}}, {"csound": [("chorales", Path("a")), ("chorales", Path("b"))]})
    assert rows[0]["songs"] == 1 and rows[0]["gain_piano"] == 5.0 and rows[0]["gain_violin"] == 1.0
    assert bench.song_sdrs([seed0])["b"]["BASIS"] == {"piano": 4.0, "violin": 4.0}
    assert bench.separated_folder(Path("o"), "lo", "sf:x", 0) == Path("o/separated/lo/sf_x")
    assert bench.separated_folder(Path("o"), "lo", "sf:x", 2) == Path("o/separated/lo@seed2/sf_x")


def test_bad_seeds_are_a_one_line_error(tmp_path):
    args = ("--priors", f"shipped={ROOT / 'pretrained'}", "--pieces", "bach/bwv108.6", "--timbres", "csound",
            "--output", str(tmp_path))
    assert_one_line_error(run_script(SCRIPT, *args, "--seeds", "1", "1"), "distinct seeds")
    assert_one_line_error(run_script(SCRIPT, *args, "--seeds", "-1"), "distinct seeds")


def test_windows_are_consecutive_whole_slices_of_the_render(tmp_path):
    import soundfile as sf

    bench = load_bench()
    rng = np.random.default_rng(0)
    song, rate = tmp_path / "renders" / "test" / "piece", 100
    piano = rng.integers(-1000, 1000, 250).astype(np.int16)             # 2.5 windows of 1 s at 100 Hz
    violin = rng.integers(-1000, 1000, 250).astype(np.int16)
    song.mkdir(parents=True)
    for name, audio in (("piano", piano), ("violin", violin), ("mix", piano + violin)):
        sf.write(str(song / f"{name}.wav"), audio, rate, subtype="PCM_16")
    windows = bench.cut_windows(song, tmp_path / "windows", 1.0, 3)
    assert [w.name for w in windows] == ["piece_w1", "piece_w2"]        # only whole windows
    for i, window in enumerate(windows):
        parts = {n: sf.read(str(window / f"{n}.wav"), dtype="int16")[0] for n in ("piano", "violin", "mix")}
        assert np.array_equal(parts["piano"], piano[i * 100:(i + 1) * 100])
        assert np.array_equal(parts["violin"], violin[i * 100:(i + 1) * 100])
        assert np.array_equal(parts["mix"], parts["piano"] + parts["violin"])
    stamp = (windows[0] / "mix.wav").stat().st_mtime_ns
    assert bench.cut_windows(song, tmp_path / "windows", 1.0, 3) == windows   # cut once: kept, not rewritten
    assert (windows[0] / "mix.wav").stat().st_mtime_ns == stamp
    short = bench.cut_windows(song, tmp_path / "short", 5.0, 3)            # shorter than a window: kept whole
    assert len(short) == 1 and sf.info(str(short[0] / "mix.wav")).frames == 250
    # windows are kept apart from the first-seconds renders and separations of the same output folder
    assert bench.folder_name("sf:x+fx") == "sf_x_fx" and bench.folder_name("merlin", 3, 20.0) == "merlin_3x20s"
    assert bench.separated_folder(Path("o"), "lo", "merlin", 1, 3, 20.0) == Path("o/separated/lo@seed1/merlin_3x20s")
    (song / "piano.wav").unlink()                                         # all cut: the sources are not read again
    assert bench.cut_windows(song, tmp_path / "windows", 1.0, 3) == windows
