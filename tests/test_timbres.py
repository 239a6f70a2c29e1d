"""Multi-timbre rendering of the open dataset (datasets/timbres.py, the builder's timbre and effect options).

Checked against independent facts: preset tables of SoundFonts written here byte by byte, the pitch of sampler
notes measured by FFT, and the builder's exact-sum / no-clipping / split rules recomputed from the files.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import assert_one_line_error, run_script
from core.errors import UserError
from datasets import midi_dataset as md
from datasets import timbres

SCRIPT = "datasets/build_midi_dataset.py"
HAVE_FLUIDSYNTH = shutil.which("fluidsynth") is not None and Path(md.DEFAULT_SOUNDFONT).is_file()
HAVE_ALL = HAVE_FLUIDSYNTH and all(Path(p).is_file() for p, _ in timbres.SOUNDFONTS.values()) and \
    (timbres.TIMBRE_DIR / "salamander").is_dir()
needs_all = pytest.mark.skipif(not HAVE_ALL, reason="needs the training timbres: ./setup.sh")
PIECES = ["bach/bwv255", "bach/bwv265"]          # short chorales (~20 s), cut to 6 s below


def fake_soundfont(path: Path, presets: list[tuple[int, int, str]]) -> Path:
    """A minimal RIFF sfbk file whose pdta/phdr chunk lists ``presets`` (bank, program, name) + the EOP record."""
    records = b"".join(name.encode()[:20].ljust(20, b"\0") + struct.pack("<HHHIII", program, bank, 0, 0, 0, 0)
                       for bank, program, name in [*presets, (0, 0, "EOP")])
    phdr = b"phdr" + struct.pack("<I", len(records)) + records
    pdta = b"LIST" + struct.pack("<I", 4 + len(phdr)) + b"pdta" + phdr
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(pdta)) + b"sfbk" + pdta)
    return path


# ------------------------------------------------------------------------------------------- timbre specs

def test_timbre_specs_parse_and_bad_ones_are_refused():
    assert timbres.parse_timbre("csound:40") == timbres.Timbre("csound", 40)
    assert timbres.parse_timbre("salamander").program is None
    assert timbres.parse_timbre("/x/bank.sf2:0").family == "bank"
    assert [t.spec for t in timbres.parse_timbres(["training"], "violin")] == list(timbres.TRAINING_TIMBRES["violin"])
    for bad in ("csound", "csound:128", "nobank:0", "fluidr3:x"):
        with pytest.raises(UserError):
            timbres.parse_timbre(bad)
    with pytest.raises(UserError, match="piano"):
        timbres.parse_timbres(["salamander"], "violin")


def test_soundfont_presets_are_read_from_the_file(tmp_path):
    sf2 = fake_soundfont(tmp_path / "two.sf2", [(0, 0, "My Piano"), (8, 40, "Other Violin")])
    assert timbres.soundfont_presets(str(sf2)) == {(0, 0): "My Piano", (8, 40): "Other Violin"}
    with pytest.raises(UserError, match=r"no program 40 in bank 0 \(it has 0\)"):
        timbres.soundfont_path(timbres.parse_timbre(f"{sf2}:40"))
    (tmp_path / "not.sf2").write_bytes(b"RIFF\0\0\0\0WAVE")
    with pytest.raises(UserError, match="not a SoundFont"):
        timbres.soundfont_presets(str(tmp_path / "not.sf2"))


@pytest.mark.skipif(not HAVE_ALL, reason="needs the training timbres: ./setup.sh")
def test_the_training_banks_hold_the_programs_asked():
    # the GM names the three banks give these presets (read off the files once; independent of the code under test)
    expected = {"fluidr3": {0: "Yamaha Grand Piano", 40: "Violin", 110: "Fiddle"},
                "csound": {0: "Piano 1", 40: "Violin", 110: "Fiddle"},
                "merlin": {0: "Piano Merlin", 40: "Violin LP3", 110: "Fiddle"}}
    for family, names in expected.items():
        presets = timbres.soundfont_presets(timbres.SOUNDFONTS[family][0])
        assert {p: presets[(0, p)] for p in names} == names
    for spec in (*timbres.TRAINING_TIMBRES["piano"], *timbres.TRAINING_TIMBRES["violin"]):
        timbres.check_timbre(timbres.parse_timbre(spec))


# ---------------------------------------------------------------------------------------------- the sampler

def fundamental(audio: np.ndarray, sr: int = 16000) -> float:
    """Frequency of the strongest FFT peak (Hz, parabolic interpolation) of the first 0.5 s."""
    x = audio[: sr // 2] * np.hanning(sr // 2)
    spectrum = np.abs(np.fft.rfft(x, 8 * x.size))
    k = int(np.argmax(spectrum))
    a, b, c = np.log(spectrum[k - 1: k + 2] + 1e-12)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / (8 * x.size)


@pytest.mark.skipif(not HAVE_ALL, reason="needs the Salamander samples: ./setup.sh")
def test_sampler_plays_the_asked_pitch_and_ends_notes():
    recorded = timbres.render_samples([(0.0, 1.0, 57, 80)])                 # A3 is a recorded note (220 Hz)
    shifted = timbres.render_samples([(0.0, 1.0, 58, 80)])                  # A#3: the A3 sample read faster
    assert abs(fundamental(recorded) - 220.0) < 220.0 * 0.01
    assert abs(fundamental(shifted) / fundamental(recorded) - 2 ** (1 / 12)) < 0.003
    # after the note's end plus the 0.25 s damper fade, silence (-60 dB from the fade's start)
    assert recorded.shape[0] >= int(1.25 * 16000)
    tail = recorded[int(1.26 * 16000):]
    assert tail.size == 0 or np.max(np.abs(tail)) < 1e-3 * np.max(np.abs(recorded))


def test_missing_or_gappy_sample_folders_name_what_to_do(tmp_path):
    with pytest.raises(UserError, match="setup.sh"):
        timbres.salamander_samples(tmp_path / "none")
    layer = tmp_path / "salamander" / "v8"
    layer.mkdir(parents=True)
    for name in ("A0", "C1", "D#1", "F#1", "A1"):                        # only the lowest keys
        (layer / f"{name}v8.ogg").write_bytes(b"")
    with pytest.raises(UserError, match=r"layer v8 .* MIDI notes 35-108"):
        timbres.salamander_samples(tmp_path / "salamander")


# --------------------------------------------------------------------------------------------------- effects

def shelf_db(kind: str, gain_db: float, cutoff: float, f: float, sr: float = 16000.0, q: float = 2 ** -0.5) -> float:
    """Gain (dB) at ``f`` of the RBJ Audio-EQ-Cookbook shelf biquad (the filter pedalboard documents)."""
    from scipy.signal import freqz

    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * cutoff / sr
    alpha = np.sin(w0) / (2 * q)
    cos, root = np.cos(w0), 2 * np.sqrt(a) * alpha
    if kind == "low":
        b = [a * ((a + 1) - (a - 1) * cos + root), 2 * a * ((a - 1) - (a + 1) * cos), a * ((a + 1) - (a - 1) * cos - root)]
        den = [(a + 1) + (a - 1) * cos + root, -2 * ((a - 1) + (a + 1) * cos), (a + 1) + (a - 1) * cos - root]
    else:
        b = [a * ((a + 1) + (a - 1) * cos + root), -2 * a * ((a - 1) + (a + 1) * cos), a * ((a + 1) + (a - 1) * cos - root)]
        den = [(a + 1) - (a - 1) * cos + root, 2 * ((a - 1) - (a + 1) * cos), (a + 1) - (a - 1) * cos - root]
    _, h = freqz(b, den, worN=[f], fs=sr)
    return float(20 * np.log10(np.abs(h[0])))


def test_effects_are_bounded_and_deterministic():
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)
    styles = [timbres.draw_part_style(np.random.default_rng(s), timbres.parse_timbres(["training"], "piano"),
                                      timbres.DEFAULT_EFFECTS) for s in range(20)]
    assert styles == [timbres.draw_part_style(np.random.default_rng(s), timbres.parse_timbres(["training"], "piano"),
                                              timbres.DEFAULT_EFFECTS) for s in range(20)]
    assert any(s["reverb"] for s in styles) and not all(s["reverb"] for s in styles)
    for style in styles:
        assert abs(style["gain_db"]) <= 6 and abs(style["low_shelf_db"]) <= 6 and abs(style["high_shelf_db"]) <= 6
        out = timbres.apply_effects(tone, style)
        assert out.shape == tone.shape and np.all(np.isfinite(out))
        change = timbres.part_level_db(out) - timbres.part_level_db(tone)
        if style["reverb"] is None:      # a 440 Hz tone: the gain plus both shelves' response at 440 Hz
            expected = style["gain_db"] + shelf_db("low", style["low_shelf_db"], 300.0, 440.0) + \
                shelf_db("high", style["high_shelf_db"], 3000.0, 440.0)
            assert abs(change - expected) < 0.3, (style, change, expected)
        else:                            # the room adds its reflections of the tone: bounded, never runaway
            assert abs(change - style["gain_db"]) < 12.0, (style, change)
    level = timbres.set_level(tone, -20.0)
    assert abs(timbres.part_level_db(level) - -20.0) < 1e-9


# ------------------------------------------------------------------------------------ the builder with timbres

def build(output: Path, *extra: str):
    return run_script(SCRIPT, "--output", str(output), "--pieces", *PIECES, "--max_piece_minutes", "0.1",
                      "--piano_timbres", "training", "--violin_timbres", "training", "--effects", "default",
                      "--part_level_db", "-20", "--jobs", "1", "--no_progress", *extra, timeout=300)


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    if not HAVE_ALL:
        pytest.skip("needs the training timbres: ./setup.sh")
    root = tmp_path_factory.mktemp("multi")
    for name in ("a", "b"):                              # the same options twice
        proc = build(root / name)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


@pytest.mark.slow
@needs_all
def test_every_part_records_its_timbre_and_the_mix_is_the_exact_sum(multi):
    data = json.loads((multi / "a" / "dataset.json").read_text())
    assert data["render_options"]["piano_timbres"] == list(timbres.TRAINING_TIMBRES["piano"])
    for key in PIECES:
        entry = data["pieces"][md.piece_name(key)]
        assert entry["split"] == md.split_of(key, 0.2)                    # the split rule is unchanged
        for name in ("piano", "violin"):
            assert entry["style"][name]["timbre"] in timbres.TRAINING_TIMBRES[name]
        folder = md.song_dir(multi / "a", entry["split"], md.piece_name(key))
        audio = {s: sf.read(str(folder / f"{s}.wav"), dtype="int16")[0].astype(np.int32) for s in md.SOURCES}
        assert np.array_equal(audio["mix"], audio["piano"] + audio["violin"])
        for s in md.SOURCES:                                              # peak 0.9: no clipping
            assert np.max(np.abs(audio[s])) <= 0.9 * 32768
        assert np.max(np.abs(audio["piano"])) > 1000 and np.max(np.abs(audio["violin"])) > 1000
        # the records trace back to the wav, hence to this entry's timbres
        record = md.tfrecord_path(multi / "a", "piano", entry["split"], md.piece_name(key))
        assert record.is_file()
    by_timbre = data["summary"]["train_minutes_by_timbre"]
    assert set(by_timbre) == {"piano", "violin"}


@needs_all
def test_the_build_is_deterministic_for_a_seed(multi):
    def wavs(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "songs").rglob("*.wav"))}

    assert wavs(multi / "a") == wavs(multi / "b")
    # a piece's style depends on the style seed and its name only, and differs between seeds and pieces
    options = md.RenderOptions(piano_timbres=timbres.TRAINING_TIMBRES["piano"],
                               violin_timbres=timbres.TRAINING_TIMBRES["violin"], effects=timbres.DEFAULT_EFFECTS)
    recorded = json.loads((multi / "a" / "dataset.json").read_text())["pieces"][md.piece_name(PIECES[0])]["style"]
    drawn = md.piece_style(PIECES[0], options)
    assert {k: v for k, v in drawn.items() if not k.endswith("_seed")} == recorded
    other_seed = md.piece_style(PIECES[0], dataclasses.replace(options, style_seed=5))
    assert other_seed != drawn and md.piece_style(PIECES[1], options) != drawn
    draws = [md.piece_style(f"bach/x{i}", options) for i in range(60)]
    assert {d["piano"]["timbre"] for d in draws} == set(timbres.TRAINING_TIMBRES["piano"])
    assert all(0.85 <= d["tempo_factor"] <= 1.15 for d in draws)


@needs_all
def test_resuming_with_other_timbres_is_refused_naming_the_difference(multi):
    proc = run_script(SCRIPT, "--output", str(multi / "a"), "--pieces", *PIECES, "--max_piece_minutes", "0.1",
                      "--piano_timbres", "fluidr3:0", "--violin_timbres", "training", "--effects", "default",
                      "--part_level_db", "-20", "--no_progress")
    assert_one_line_error(proc, "piano_timbres", "--overwrite")


def test_bad_timbre_options_are_one_line_errors(tmp_path):
    out = str(tmp_path / "out")
    assert_one_line_error(run_script(SCRIPT, "--output", out, "--violin_timbres", "salamander"), "piano")
    assert_one_line_error(run_script(SCRIPT, "--output", out, "--piano_timbres", "casio:0"), "unknown source")
    sf2 = fake_soundfont(tmp_path / "one.sf2", [(0, 0, "Only a piano")])
    assert_one_line_error(run_script(SCRIPT, "--output", out, "--soundfont", str(sf2)), "no program 40")
    assert_one_line_error(run_script(SCRIPT, "--output", out, "--composer_minutes", "bach"), "NAME=MINUTES")
    assert not Path(out).exists()


def test_build_options_from_flags_are_parsed_in_the_library():
    from datasets.corpus import parse_composer_minutes

    assert parse_composer_minutes(["bach=60", "monteverdi=25.5"]) == (("bach", 60.0), ("monteverdi", 25.5))
    for bad in ("bach", "=3", "bach=x", "bach=-1"):
        with pytest.raises(UserError, match="is not NAME=MINUTES"):
            parse_composer_minutes([bad])
    assert timbres.effect_options("none") == timbres.EffectOptions()
    assert timbres.effect_options("default", reverb=None, gain_db=2.0) == \
        dataclasses.replace(timbres.DEFAULT_EFFECTS, gain_db=2.0)
    with pytest.raises(UserError, match="--tempo_jitter 1.0 is out of range"):
        timbres.effect_options("none", tempo_jitter=1.0)
    assert timbres.timbre_specs(None, None, "violin", 40) == timbres.DEFAULT_TIMBRES["violin"]
    assert timbres.timbre_specs(None, "csound", "piano", 0) == ("csound:0",)
    with pytest.raises(UserError, match="not both"):
        timbres.timbre_specs(["fluidr3:0"], "csound", "piano", 0)
