"""The open piano/violin duo dataset builder (datasets/build_midi_dataset.py, datasets/midi_dataset.py).

One tiny dataset (three short Bach chorales and one score music21 cannot expand) is rendered for real with
FluidSynth by the command-line script; the audio, the TFRecords, the split and resuming are checked against
independent computations (librosa, soundfile, the preprocessing module), not against the builder's own numbers.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import assert_one_line_error, run_script
from core import spectral
from datasets import midi_dataset as md
from datasets import preprocessing as pp

SCRIPT = "datasets/build_midi_dataset.py"
HAVE_FLUIDSYNTH = shutil.which("fluidsynth") is not None and Path(md.DEFAULT_SOUNDFONT).is_file()
needs_fluidsynth = pytest.mark.skipif(not HAVE_FLUIDSYNTH, reason="needs: apt-get install fluidsynth fluid-soundfont-gm")

# Short four-part chorales (~20 s each); which of them are train or test is decided by the split function.
SHORT_CHORALES = ["bach/bwv165.6", "bach/bwv255", "bach/bwv265", "bach/bwv286", "bach/bwv336", "bach/bwv387",
                  "bach/bwv432", "bach/bwv370"]
UNEXPANDABLE = "haydn/opus74no1/movement3"    # music21 cannot expand its repeats


def chosen_pieces() -> list[str]:
    train = [k for k in SHORT_CHORALES if md.split_of(k, 0.2) == "train"]
    test = [k for k in SHORT_CHORALES if md.split_of(k, 0.2) == "test"]
    assert train and test, "the candidate chorales must cover both splits"
    return [train[0], test[0], train[1]]


def build(output: Path, *extra: str):
    return run_script(SCRIPT, "--output", str(output), "--pieces", *chosen_pieces(), UNEXPANDABLE,
                      "--jobs", "2", "--no_progress", *extra, timeout=240)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    if not HAVE_FLUIDSYNTH:
        pytest.skip("needs: apt-get install fluidsynth fluid-soundfont-gm")
    output = tmp_path_factory.mktemp("duos") / "out"
    proc = build(output)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return output, proc


def songs(output: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted((output / "songs").glob("*/*")) if p.is_dir()}


def read(folder: Path, source: str, dtype: str = "float32") -> np.ndarray:
    audio, rate = sf.read(str(folder / f"{source}.wav"), dtype=dtype, always_2d=True)
    assert rate == 16000 and audio.shape[1] == 1, (rate, audio.shape)
    return audio[:, 0]


# --------------------------------------------------------------------------------------------- split (no audio)

def test_split_is_a_stable_function_of_the_name_only():
    pieces = md.list_corpus_pieces(["bach", "haydn"])
    keys = [p.key for p in pieces]
    first = {k: md.split_of(k, 0.2) for k in keys}
    assert first == {k: md.split_of(k, 0.2) for k in reversed(keys)}        # order does not matter
    # the seed only changes the visit order, never a piece's split
    for seed in (0, 1, 7):
        order = md.visit_order(pieces, seed)
        assert sorted(p.key for p in order) == sorted(keys)
        assert all(md.split_of(p.key, 0.2) == first[p.key] for p in order)
    assert [p.key for p in md.visit_order(pieces, 3)] == [p.key for p in md.visit_order(pieces, 3)]
    assert [p.key for p in md.visit_order(pieces, 3)] != [p.key for p in md.visit_order(pieces, 4)]
    # about the asked fraction, and the extremes
    share = np.mean([s == "test" for s in first.values()])
    assert 0.12 < share < 0.28, share
    assert all(md.split_of(k, 0.0) == "train" for k in keys)
    assert all(md.split_of(k, 1.0) == "test" for k in keys)
    # raising the fraction only moves pieces from train to test
    assert all(md.split_of(k, 0.3) == "test" for k in keys if first[k] == "test")


def test_corpus_lists_each_piece_once_and_skips_analyses():
    pieces = md.list_corpus_pieces(["bach", "beethoven"])
    keys = [p.key for p in pieces]
    assert len(keys) == len(set(keys))
    by_key = {p.key: p for p in pieces}
    assert by_key["bach/bwv281"].corpus_path.endswith(".mxl")                # .krn and .mxl copies: one piece
    assert by_key["beethoven/opus18no1/movement1"].corpus_path.endswith(".mxl")
    assert not any(p.corpus_path.endswith(".rntxt") for p in pieces)
    assert by_key["bach/bwv66.6"].name == "bach_bwv66.6"
    assert by_key["beethoven/opus59no1/movement1"].name == "beethoven_opus59no1_movement1"


def test_pieces_with_the_same_melody_share_a_split():
    for group in md.SAME_MELODY_GROUPS:
        for fraction in (0.1, 0.2, 0.5):
            assert len({md.split_of(k, fraction) for k in group}) == 1, group


def test_abc_collections_are_listed_one_piece_per_tune():
    import re

    from music21 import converter

    # O'Neill's numbers its tunes across the book and stores some twice (0732-0758_bs.abc and _mh.abc, two
    # transcriptions): each number is one piece, read from the first file; counted here from the files' text.
    oneills = md.list_corpus_pieces(["oneills1850"])
    numbers = set()
    for path in {p.path for p in oneills}:
        numbers.update(int(n) for n in re.findall(r"^X:\s*(\d+)", path.read_text(encoding="latin-1"), re.M))
    assert sorted(p.key for p in oneills) == sorted(f"oneills1850/{n}" for n in numbers)
    tune = {p.key: p for p in oneills}["oneills1850/732"]
    assert tune.number == 732 and tune.corpus_path == "oneills1850/0732-0758_bs.abc#732"
    assert tune.name == "oneills1850_732"
    score = converter.parse(str(tune.path), number=tune.number)
    assert score.metadata.title == "The Kerry Cobbler" and len(score.parts) == 1     # its T: line
    from datasets.scores import load_score, melody_fingerprint
    loaded, info = load_score(tune.path, 90.0, accompany=np.random.default_rng(0), number=tune.number)
    assert info["melody_fingerprint"] == melody_fingerprint(score.parts[0]) and info["parts"] == 2
    assert {md.split_of(p.key, 0.2) for p in oneills} == {"train", "test"}
    # essenFolksong restarts its numbers in every file: a tune is keyed by file and number
    essen = {p.key for p in md.list_corpus_pieces(["essenFolksong"])}
    assert {"essenFolksong/han1/5", "essenFolksong/han2/5"} <= essen
    # one tune per file (ryansMammoth): keys are the file's, as before
    ryans = md.list_corpus_pieces(["ryansMammoth"])
    assert all(p.number is None and p.corpus_path == p.key + ".abc" for p in ryans)


def test_a_tune_whose_measures_share_a_time_signature_becomes_midi():
    # music21's abc reader puts one TimeSignature object into two measures of O'Neill's tune 1 (its MIDI writer
    # then fails); the loaded score must still become a duo, the violin playing every melody note.
    from music21 import converter, meter, stream

    from datasets.scores import load_score, midi_notes, score_to_duo_midi

    tune = md.find_corpus_pieces(["oneills1850/1"])[0]
    raw = converter.parse(str(tune.path), number=tune.number)
    signatures = [id(t) for m in raw.recurse().getElementsByClass(stream.Measure)
                  for t in m.getElementsByClass(meter.TimeSignature)]
    assert len(signatures) > len(set(signatures))          # the case this test is about
    score, info = load_score(tune.path, 90.0, accompany=np.random.default_rng(0), number=tune.number)
    violin, piano, seconds = score_to_duo_midi(score, info["melody_part"][0])
    melody = [n for n in score.parts[info["melody_part"][0]].flatten().notes
              if n.tie is None or n.tie.type == "start"]
    assert len(midi_notes(violin)) == sum(len(n.pitches) for n in melody) > 0
    assert len(midi_notes(piano)) > 0 and seconds > 10


def test_corpus_holds_more_than_two_hours_of_music():
    # Independent estimate without rendering: quarter notes of every chorale (repeats not expanded) at the
    # default 90 per minute, which is below the real length (repeats add to it) for the chorales alone.
    from music21 import corpus

    chorales = [p for p in md.list_corpus_pieces(["bach"]) if p.path.suffix == ".mxl"]
    assert len(chorales) > 350
    sample = chorales[::20]
    quarters = [float(corpus.parse(str(p.path)).highestTime) for p in sample]
    estimated_minutes = np.mean(quarters) / 90.0 * len(chorales)
    assert estimated_minutes > 150, estimated_minutes


# ------------------------------------------------------------------------------------------ mixing (synthetic)

def test_mix_is_the_exact_sum_and_never_clips():
    rng = np.random.default_rng(0)
    n = 16000
    piano = 0.3 * rng.standard_normal(n)
    violin = np.concatenate([-piano[: n // 2] * 1.5, 0.2 * rng.standard_normal(n // 2)])   # cancels for a while
    violin = np.concatenate([violin, np.zeros(3000)])                                   # a longer rendering
    p, v, m = md.mix_sources(piano, violin, peak=0.9)
    assert p.dtype == v.dtype == m.dtype == np.int16
    assert p.shape == v.shape == m.shape
    assert np.array_equal(m.astype(np.int32), p.astype(np.int32) + v.astype(np.int32))
    for x in (p, v, m):
        assert np.abs(x.astype(np.int32)).max() <= 0.9 * 32768
    assert np.abs(m.astype(np.int32)).max() >= 0.89 * 32768 or np.abs(v.astype(np.int32)).max() >= 0.89 * 32768
    assert m.shape[0] <= n + 1                                             # the common trailing silence is cut
    # the sources keep their ratio: one gain for both
    gain = np.dot(p.astype(float), piano[: p.shape[0]]) / np.dot(piano[: p.shape[0]], piano[: p.shape[0]])
    assert np.allclose(p, piano[: p.shape[0]] * gain, atol=0.51)
    assert np.allclose(v, violin[: v.shape[0]] * gain, atol=0.51)


def test_a_silent_instrument_is_refused():
    tone = np.sin(np.arange(16000) * 0.05)
    with pytest.raises(md.SkipPiece, match="violin is silent"):
        md.mix_sources(tone, np.zeros(16000))
    with pytest.raises(md.SkipPiece, match="piano is silent"):
        md.mix_sources(1e-6 * tone, tone)


def test_long_pieces_are_cut_with_a_fade():
    tone = 0.5 * np.sin(np.arange(16000 * 5) * 0.05)
    p, v, m = md.mix_sources(tone, tone * 0.5, max_seconds=2.0)
    assert m.shape[0] == 32000
    assert abs(int(m[-1])) < 200 and np.abs(m[:16000].astype(int)).max() > 20000


# --------------------------------------------------------------------------------------- the rendered dataset

def test_layout_split_and_dataset_json(dataset):
    output, proc = dataset
    keys = chosen_pieces()
    names = [md.piece_name(k) for k in keys]
    found = songs(output)
    assert sorted(found) == sorted(names)
    for key, name in zip(keys, names):
        split = found[name].parent.name
        assert split == md.split_of(key, 0.2)
        other = "test" if split == "train" else "train"
        assert not (output / "songs" / other / name).exists()
        for source in ("piano", "violin", "mix"):
            assert (output / "tfrecords" / source / split / f"{name}.tfrecord").is_file()
            assert not (output / "tfrecords" / source / other / f"{name}.tfrecord").exists()
    assert {p.parent.name for p in found.values()} == {"train", "test"}
    data = json.loads((output / "dataset.json").read_text())
    assert sorted(data["pieces"]) == sorted(names)
    for name, entry in data["pieces"].items():
        assert entry["split"] == found[name].parent.name
        info = sf.info(str(found[name] / "mix.wav"))
        assert entry["seconds"] == pytest.approx(info.frames / 16000, abs=1e-3)
        assert 10 < entry["seconds"] < 60
    assert data["options"]["seed"] == 0 and data["render_options"]["test_fraction"] == 0.2
    assert data["render_options"]["tempo"] == 90.0
    # the unexpandable score was skipped with one warning line and remembered
    assert any(UNEXPANDABLE in k for k in data["skipped"])
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and UNEXPANDABLE in warnings[0] and "repeats" in warnings[0], proc.stderr
    assert "Traceback" not in proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert "3 pieces" in summary and "1 scores skipped" in summary, summary


def test_audio_mix_is_exact_sum_16k_mono_no_clipping(dataset):
    output, _ = dataset
    for name, folder in songs(output).items():
        ints = {s: read(folder, s, "int16").astype(np.int32) for s in ("mix", "piano", "violin")}
        floats = {s: read(folder, s) for s in ("mix", "piano", "violin")}
        assert sf.info(str(folder / "mix.wav")).subtype == "PCM_16"
        assert np.array_equal(ints["mix"], ints["piano"] + ints["violin"]), name
        assert np.array_equal(floats["mix"], floats["piano"] + floats["violin"]), name
        for source, audio in floats.items():
            assert np.abs(audio).max() <= 0.9, (name, source)
        assert np.abs(floats["mix"]).max() > 0.85                      # normalised, not quiet
        for source in ("piano", "violin"):                             # both instruments really play
            rms = np.sqrt(np.mean(floats[source] ** 2))
            assert rms > 0.02, (name, source, rms)
            active = np.mean(np.abs(floats[source]) > 0.01)
            assert active > 0.5, (name, source, active)


def test_violin_plays_the_top_voice(dataset):
    import librosa

    output, _ = dataset
    for name, folder in songs(output).items():
        pitch, centroid = {}, {}
        for source in ("piano", "violin"):
            audio = read(folder, source)
            f0 = librosa.yin(audio, fmin=60, fmax=2000, sr=16000, frame_length=2048, hop_length=512)
            rms = librosa.feature.rms(y=audio, frame_length=2048, hop_length=512)[0][: f0.shape[0]]
            pitch[source] = float(np.median(f0[rms > 0.1 * rms.max()]))
            centroid[source] = float(librosa.feature.spectral_centroid(y=audio, sr=16000).mean())
        # a soprano line lies around 250-900 Hz; alto/tenor/bass below
        assert 250 < pitch["violin"] < 900, (name, pitch)
        assert pitch["violin"] > 1.5 * pitch["piano"], (name, pitch)
        assert centroid["violin"] > centroid["piano"], (name, centroid)


def test_tfrecords_hold_the_spectrograms_of_the_wavs(dataset):
    output, _ = dataset
    params = spectral.SpectrogramParams()
    for name, folder in songs(output).items():
        split = folder.parent.name
        for source in ("piano", "violin", "mix"):
            audio, _ = pp.load_audio(folder / f"{source}.wav")
            expected = spectral.audio_to_mel_segments(audio, params, scale="dB")
            spectrograms, records = pp.read_tfrecord(output / "tfrecords" / source / split / f"{name}.tfrecord")
            assert spectrograms.shape == expected.shape == (int(np.ceil(audio.shape[0] / 32640)), 96, 64)
            np.testing.assert_array_equal(spectrograms, expected)
            assert [r["segment_index"] for r in records] == list(range(len(records)))
            assert all(r["scale"] == "dB" for r in records)
            assert records[0]["source_file"] == f"songs/{split}/{name}/{source}.wav"


def test_rerun_resumes_and_rebuilds_only_unfinished_pieces(dataset):
    output, _ = dataset
    found = songs(output)
    files = sorted(p for p in output.rglob("*") if p.is_file() and p.name != "dataset.json")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    time.sleep(0.05)
    started = time.monotonic()
    proc = build(output)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 30
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before      # nothing rewritten
    assert "warning" not in proc.stderr                                # the skipped score is not retried
    assert "0 built, 3 kept" in proc.stdout, proc.stdout

    # an interrupted piece (a missing tfrecord) is rendered again, identically; the others are kept
    name, folder = sorted(found.items())[0]
    split = folder.parent.name
    victim = output / "tfrecords" / "violin" / split / f"{name}.tfrecord"
    victim.unlink()
    proc = run_script(SCRIPT, "--output", str(output), "--pieces", *chosen_pieces(), UNEXPANDABLE,
                      "--jobs", "1", "--no_progress", timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "1 built, 2 kept" in proc.stdout, proc.stdout
    assert victim.is_file()
    for path, (mtime, content) in before.items():
        if path.suffix == ".wav":
            assert path.read_bytes() == content, path                 # deterministic rendering
        if name not in str(path):
            assert path.stat().st_mtime_ns == mtime, path
    # (a tfrecord's bytes may differ: protobuf does not fix the order of an Example's features)
    rebuilt_mix = output / "tfrecords" / "mix" / split / f"{name}.tfrecord"
    audio, _ = pp.load_audio(folder / "mix.wav")
    np.testing.assert_array_equal(pp.read_tfrecord(rebuilt_mix)[0], spectral.audio_to_mel_segments(audio, spectral.SpectrogramParams()))
    assert not list(output.rglob("*.partial"))


@needs_fluidsynth
def test_minutes_and_max_pieces_stop_the_build(tmp_path):
    keys = chosen_pieces()                                   # each ~20-30 s of audio
    data = md.build_dataset(md.BuildOptions(output=str(tmp_path / "a"), minutes=0.2, jobs=1, pieces=tuple(keys)),
                            progress=False)
    assert sorted(songs(tmp_path / "a")) == [md.piece_name(keys[0])]      # 12 s asked: the first piece is enough
    assert data["summary"]["minutes_per_instrument"] >= 0.2
    md.build_dataset(md.BuildOptions(output=str(tmp_path / "b"), minutes=1000, max_pieces=2, jobs=1,
                                     pieces=tuple(keys)), progress=False)
    assert sorted(songs(tmp_path / "b")) == sorted(md.piece_name(k) for k in keys[:2])


def test_other_rendering_options_need_overwrite(dataset):
    output, _ = dataset
    proc = run_script(SCRIPT, "--output", str(output), "--pieces", *chosen_pieces(), "--tempo", "120",
                      "--no_progress")
    assert_one_line_error(proc, "--overwrite")


# ------------------------------------------------------------------------------------------------ user errors

def test_missing_soundfont_is_one_line_error(tmp_path):
    proc = run_script(SCRIPT, "--output", str(tmp_path / "out"), "--soundfont", str(tmp_path / "none.sf2"))
    assert_one_line_error(proc, "apt-get install fluidsynth fluid-soundfont-gm")
    assert not (tmp_path / "out").exists()


def test_missing_fluidsynth_is_one_line_error(tmp_path):
    env_path = os.environ.get("PATH", "")
    try:
        os.environ["PATH"] = str(tmp_path)           # no fluidsynth there; the interpreter is called by path
        proc = run_script(SCRIPT, "--output", str(tmp_path / "out"))
    finally:
        os.environ["PATH"] = env_path
    assert_one_line_error(proc, "fluidsynth", "apt-get install fluidsynth fluid-soundfont-gm")


def test_bad_options_are_one_line_errors(tmp_path):
    assert_one_line_error(run_script(SCRIPT, "--output", str(tmp_path), "--composers", "nobody", "--no_progress"),
                          "nobody")
    assert_one_line_error(run_script(SCRIPT, "--output", str(tmp_path), "--pieces", "bach/nothing"), "bach/nothing")
    assert_one_line_error(run_script(SCRIPT, "--output", str(tmp_path), "--test_fraction", "1.5"), "--test_fraction")


def test_help_describes_every_option():
    proc = run_script(SCRIPT, "--help")
    assert proc.returncode == 0
    for option in ("--output", "--minutes", "--max_pieces", "--composers", "--pieces", "--seed", "--test_fraction",
                   "--tempo", "--soundfont", "--jobs", "--overwrite", "--max_piece_minutes", "--scale"):
        assert option in proc.stdout, option
    assert "apt-get install fluidsynth fluid-soundfont-gm" in proc.stdout


@needs_fluidsynth
def test_composer_minutes_cap_a_collection(tmp_path):
    keys = [k for k in SHORT_CHORALES[:3]]
    options = md.BuildOptions(output=str(tmp_path / "capped"), minutes=1000, jobs=1, pieces=tuple(keys),
                              composer_minutes=(("bach", 0.15),), render=md.RenderOptions(max_piece_minutes=0.1))
    data = md.build_dataset(options, progress=False)
    # 6 s per piece, a 9 s cap: the second piece crosses it, the third is not taken
    assert sorted(songs(tmp_path / "capped")) == sorted(md.piece_name(k) for k in keys[:2])
    assert data["summary"]["train_minutes_by_composer"].get("bach", 0.0) <= 0.2
