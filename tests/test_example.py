"""The main job out of the box: the README's example command (reduced) and separate_songs.py over a song folder,
both with the priors shipped in pretrained/."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, assert_one_line_error, music_like, run_script, write_wav

PRIORS = [str(ROOT / "pretrained" / "piano"), str(ROOT / "pretrained" / "violin")]


def read_table(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_example_separates_inverts_and_scores_with_the_shipped_priors(tmp_path):
    output = tmp_path / "example"
    proc = run_script("run_example.py", "--output", str(output), "--seconds", "3", "--T", "1", "--no_progress",
                      timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    song = output / "bach_bwv108.6"
    for name in ("piano", "violin"):
        audio, rate = sf.read(song / f"{name}.wav")
        assert rate == 16000 and audio.shape == (48000,) and np.all(np.isfinite(audio)), name
        assert np.abs(audio).max() > 0  # not silent
    for figure in ("spectrograms.png", "scores.png"):
        assert (song / figure).stat().st_size > 10_000
    rows = read_table(output / "scores.csv")
    assert {(r["method"], r["source"]) for r in rows} == {(m, s) for m in ("BASIS", "mixture", "IRM")
                                                          for s in ("piano", "violin")}
    assert all(np.isfinite(float(r["SDR"])) for r in rows)
    irm = {r["source"]: float(r["SDR"]) for r in rows if r["method"] == "IRM"}
    mixture = {r["source"]: float(r["SDR"]) for r in rows if r["method"] == "mixture"}
    assert all(irm[s] > mixture[s] + 5 for s in irm)  # the oracle is far above the baseline: the scoring is sane
    assert "BSS Eval v4 of bach_bwv108.6" in proc.stdout and "example done" in proc.stdout
    page = (song / "report.html").read_text()  # players of the mixture, 2 sources x (truth, BASIS, mixture, IRM)
    assert page.count("<audio") == 9 and 'src="scores.png"' in page and 'src="baselines/IRM/piano.wav"' in page
    assert 'href="bach_bwv108.6/report.html"' in (output / "index.html").read_text()
    again = run_script("run_example.py", "--output", str(output), "--seconds", "3", "--T", "1", "--no_progress",
                       timeout=900)
    assert again.returncode == 0 and "done already, skipped" in again.stderr, again.stderr[-2000:]


def test_example_rejects_bad_options(tmp_path):
    assert_one_line_error(run_script("run_example.py", "--output", str(tmp_path), "--seconds", "1"), "--seconds")


@pytest.fixture
def songs(tmp_path):
    """Three tiny songs (one segment each) with ground truth."""
    root = tmp_path / "songs"
    for index in range(3):
        piano, violin = music_like(1.5, seed=index, f0=110.0), music_like(1.5, seed=10 + index, f0=660.0)
        write_wav(root / f"song{index}" / "piano.wav", piano)
        write_wav(root / f"song{index}" / "violin.wav", violin)
        write_wav(root / f"song{index}" / "mix.wav", piano + violin)
    return root


@pytest.mark.slow
def test_separate_songs_shards_skips_done_songs_and_aggregates(songs, tmp_path):
    output = tmp_path / "out"
    common = ["separate_songs.py", str(songs), *PRIORS, "--config", PRIORS[0] + "/config.yml", "--output",
              str(output), "--T", "1", "--no_progress"]
    first = run_script(*common, "--shard", "2/2", timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(p.name for p in output.iterdir() if p.is_dir()) == ["song1"]  # every 2nd song from the 2nd
    for name in ("piano", "violin"):
        assert sf.info(str(output / "song1" / f"{name}.wav")).frames == 24000
    assert (output / "song1" / "baselines" / "IRM" / "metrics.json").is_file()
    second = run_script(*common, "--shard", "1/2", timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "song1" not in second.stderr  # not its shard
    rows = read_table(output / "scores.csv")
    assert len(rows) == 6 and all(r["songs"] == "3" for r in rows)  # every scored song of OUT is aggregated
    # median over frames, then over songs: recomputed from the per-song metrics files
    from separation.evaluation import Scores
    per_song = [Scores.load(output / f"song{i}" / "metrics.json").medians()["piano"]["SDR"] for i in range(3)]
    basis_piano = next(float(r["SDR"]) for r in rows if r["method"] == "BASIS" and r["source"] == "piano")
    assert basis_piano == pytest.approx(np.median(per_song), abs=1e-6)
    index = (output / "index.html").read_text()  # one page per song, linked from the folder's index
    assert all(f'href="song{i}/report.html"' in index and (output / f"song{i}" / "report.html").is_file()
               for i in range(3))
    assert 'src="baselines/IRM/violin.wav"' in (output / "song1" / "report.html").read_text()
    again = run_script(*common, timeout=900)
    assert again.returncode == 0 and again.stderr.count("done already, skipped") == 3, again.stderr[-2000:]
    # a run stopped after a song's BASIS scores but before its baselines: the re-run scores only the baselines
    import shutil

    basis_scores = (output / "song0" / "metrics.json").read_bytes()
    shutil.rmtree(output / "song0" / "baselines")
    mended = run_script(*common, timeout=900)
    assert mended.returncode == 0 and "song0: BASIS done already; scoring the baselines" in mended.stderr
    assert (output / "song0" / "baselines" / "IRM" / "metrics.json").is_file()
    assert (output / "song0" / "metrics.json").read_bytes() == basis_scores  # not separated again
    assert_one_line_error(run_script(*common, "--shard", "3/2"), "--shard 3/2")
    assert_one_line_error(run_script("separate_songs.py", str(tmp_path / "none"), *PRIORS, "--config",
                                     PRIORS[0] + "/config.yml"), "does not exist")


def test_example_without_fluidsynth_says_what_to_install(tmp_path):
    """A machine where set-up could not install FluidSynth: one line naming the program and the apt-get command."""
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = run_script("run_example.py", "--output", str(tmp_path / "example"), env={"PATH": str(empty)})
    assert_one_line_error(proc, "fluidsynth", "apt-get install")


def test_setup_reports_a_failed_system_install(tmp_path):
    """setup.sh where apt-get fails (no network, no mirror): it stops with a line naming the packages and the
    command to install them, before touching the virtual environment."""
    import os
    import subprocess

    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")                       # nothing is installed
    (stubs / "apt-get").write_text("#!/bin/sh\necho 'E: Unable to locate package' >&2\nexit 100\n")
    (stubs / "id").write_text("#!/bin/sh\necho 0\n")                                 # as root: no sudo
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(ROOT / "setup.sh")], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("setup.sh: error:")]
    assert len(errors) == 1 and "fluidsynth" in errors[0] and "apt-get install" in errors[0], proc.stderr
    assert "installing Python packages" not in proc.stdout


@pytest.fixture
def built(monkeypatch):
    """The BASIS objects separation.separate.build_basis makes while the test runs, in order."""
    from separation import separate

    made, real = [], separate.build_basis

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(separate, "build_basis", spy)
    return made


@pytest.mark.slow
def test_one_basis_serves_every_song_of_the_same_shape(songs, tmp_path, built):
    """separate_songs builds BASIS once and its compiled level loop is traced once for songs of one segment shape
    (it used to be rebuilt, and traced again, for every song)."""
    from core.config import load_config
    from separation import song_folders

    config = load_config(PRIORS[0] + "/config.yml", {"T": 1})
    done = song_folders.separate_songs(song_folders.find_songs(songs), PRIORS, config, tmp_path / "out",
                                       baselines=False, progress=False)
    assert [s.name for s in done] == ["song0", "song1", "song2"]
    assert len(built) == 1 and built[0]._compiled.experimental_get_tracing_count() == 1
    for song in done:
        assert sf.info(str(tmp_path / "out" / song.name / "violin.wav")).frames == 24000


@pytest.mark.slow
def test_a_basis_kept_across_calls_is_built_once_and_separates_as_a_new_one(songs, tmp_path, built):
    """bench_generalisation.py separates one folder per Langevin seed: with a ``bases`` dict kept across the calls
    the priors are loaded and traced once, and seed 1 through the reused BASIS writes the same estimates as seed 1
    through a BASIS of its own."""
    from core.config import load_config
    from separation import song_folders

    config = load_config(PRIORS[0] + "/config.yml", {"T": 1})
    song = song_folders.find_songs(songs)[:1]
    bases = {}
    for seed in (0, 1):
        song_folders.separate_songs(song, PRIORS, config, tmp_path / f"kept{seed}", seed=seed, baselines=False,
                                    progress=False, report=False, bases=bases)
    assert len(built) == 1 and list(bases.values()) == built
    assert built[0]._compiled.experimental_get_tracing_count() == 1
    song_folders.separate_songs(song, PRIORS, config, tmp_path / "new1", seed=1, baselines=False, progress=False,
                                report=False)
    assert len(built) == 2
    # another config (here the sampler's T) is not served by the kept BASIS: a second one is built for it
    other = load_config(PRIORS[0] + "/config.yml", {"T": 2})
    song_folders.separate_songs(song, PRIORS, other, tmp_path / "other", baselines=False, progress=False,
                                report=False, bases=bases)
    assert len(built) == 3 and len(bases) == 2
    read = lambda folder: sf.read(str(tmp_path / folder / song[0].name / "violin.wav"))[0]  # noqa: E731
    np.testing.assert_array_equal(read("kept1"), read("new1"))
    assert np.max(np.abs(read("kept1") - read("kept0"))) > 1e-4      # the seed does change the estimate
