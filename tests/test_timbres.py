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


# ----------------------------------------------------------------------------------------------- formant shift

def duo_midi(pitches=("A3", "E4"), seconds_per_note: float = 1.0) -> bytes:
    """The piano part of a two-part score: ``pitches`` one after the other, ``seconds_per_note`` each (60 bpm)."""
    from music21 import note, stream, tempo

    from datasets import scores

    melody, accompaniment = stream.Part(), stream.Part()
    melody.append(tempo.MetronomeMark(number=60))
    melody.append(note.Note("A5", quarterLength=seconds_per_note * len(pitches)))
    for pitch in pitches:
        accompaniment.append(note.Note(pitch, quarterLength=seconds_per_note))
    score = stream.Score()
    score.insert(0, melody)
    score.insert(0, accompaniment)
    return scores.score_to_duo_midi(score, 0)[1]


def test_shift_midi_moves_every_note_and_stretches_time():
    from music21 import midi

    from datasets import scores

    smf = duo_midi(("A3", "E4", "C4"))
    before = scores.midi_notes(smf)
    after = scores.midi_notes(scores.shift_midi(smf, -3, 1.25))
    assert [n[2] for n in after] == [n[2] - 3 for n in before] == [54, 61, 57]
    np.testing.assert_allclose([n[:2] for n in after], [(1.25 * a, 1.25 * b) for a, b, *_ in before], atol=1e-3)
    # a file that sets no tempo plays at MIDI's default 120 per minute: the stretch applies to that
    smf_file = midi.MidiFile()
    smf_file.readstr(smf)
    for track in smf_file.tracks:
        track.events = [e for e in track.events if isinstance(e, midi.DeltaTime) or e.type != midi.MetaEvents.SET_TEMPO]
    untimed = smf_file.writestr()
    assert scores.midi_notes(untimed)[1][0] == pytest.approx(0.5)                     # one quarter at 120 bpm
    assert scores.midi_notes(scores.shift_midi(untimed, 0, 2.0))[1][0] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(scores.SkipPiece, match="leaves the MIDI range"):
        scores.shift_midi(smf, 100, 1.0)


@pytest.mark.skipif(not HAVE_ALL, reason="needs the Salamander samples: ./setup.sh")
def test_a_formant_shift_keeps_pitch_and_timing_and_moves_the_envelope(tmp_path):
    """Shifted by 3 semitones, A3 keeps its pitch (220 Hz) and its note change at 1 s, and its spectrum becomes that
    of the F#3 recording three semitones below, stretched in frequency by 2 ** (3 / 12) (computed here by
    interpolating F#3's spectrum, not by the renderer's sample-rate trick)."""
    import librosa

    from datasets.rendering import render_part

    sr, k = 16000, 3
    smf = duo_midi(("A3", "E4"))
    plain = render_part("p", smf, "salamander", tmp_path, sr, 10.0)
    shifted = render_part("p", smf, "salamander", tmp_path, sr, 10.0, formant_semitones=k)
    assert abs(shifted.shape[0] - plain.shape[0]) < 0.05 * sr
    second = []
    for audio in (plain, shifted):
        f0 = librosa.yin(audio[: int(0.9 * sr)].astype(np.float64), fmin=100, fmax=500, sr=sr, frame_length=2048)
        assert abs(np.median(f0) - 220.0) < 2.2                              # A3 in both, within 1 %
        onsets = librosa.onset.onset_detect(y=audio.astype(np.float64), sr=sr, units="time", hop_length=128)
        second.append(onsets[np.argmin(np.abs(onsets - 1.0))])
    assert abs(second[0] - 1.0) < 0.05 and abs(second[1] - second[0]) < 0.016   # E4 starts at 1 s in both

    def spectrum(audio, seconds):
        x = audio[: int(seconds * sr)].astype(np.float64)
        return np.fft.rfftfreq(x.size, 1 / sr), np.abs(np.fft.rfft(x * np.hanning(x.size)))

    ratio = 2 ** (k / 12)
    lower = timbres.render_samples([(0.0, 2.0, 57 - k, 80)], sr)            # F#3, played plainly
    f, got = spectrum(shifted, 0.8)
    f_low, low = spectrum(lower, 0.8 * ratio)                                # the same stretch of the recording
    expected = np.interp(f / ratio, f_low, low)
    f_plain, plain_spectrum = spectrum(plain, 0.8)
    band = (f > 150) & (f < 4000)

    def log_correlation(a, b):
        return np.corrcoef(np.log(a[band] + 1e-6), np.log(b[band] + 1e-6))[0, 1]

    assert log_correlation(got, expected) > 0.9
    # the piano's lowest key cannot be played 3 semitones lower: the piece is skipped, saying why
    from datasets.scores import SkipPiece

    with pytest.raises(SkipPiece, match="played -3 semitones for the formant shift"):
        render_part("piano", duo_midi(("A0",)), "salamander", tmp_path, sr, 10.0, formant_semitones=k)
    assert log_correlation(got, expected) > log_correlation(got, plain_spectrum) + 0.05


def test_formant_shifts_are_drawn_last_and_leave_every_other_draw_as_it_was():
    plain = md.RenderOptions(piano_timbres=("fluidr3:0", "csound:0"), violin_timbres=("fluidr3:40", "csound:40"),
                             effects=timbres.DEFAULT_EFFECTS)
    shifted = dataclasses.replace(plain, effects=timbres.effect_options("default", formant_semitones=3))
    drawn = []
    for i in range(40):
        before, after = md.piece_style(f"bach/x{i}", plain), md.piece_style(f"bach/x{i}", shifted)
        assert "formant_semitones" not in before["piano"] and "formant_semitones" not in before["violin"]
        drawn += [after[name].pop("formant_semitones") for name in md.INSTRUMENTS]
        assert after == before                         # the same build otherwise: timbres, effects, tempo, seeds
    assert all(isinstance(k, int) for k in drawn) and set(drawn) == set(range(-3, 4))
    for bad in (2.5, 7, -1):
        with pytest.raises(UserError, match="formant_semitones"):
            timbres.effect_options("default", formant_semitones=bad)


@pytest.mark.slow
@needs_all
def test_a_build_with_formant_shifts_records_them_and_stays_an_exact_bounded_mix(tmp_path):
    proc = build(tmp_path / "f", "--formant_semitones", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "f" / "dataset.json").read_text())
    assert data["render_options"]["effects"]["formant_semitones"] == 3
    for key in PIECES:
        entry = data["pieces"][md.piece_name(key)]
        assert all(entry["style"][name]["formant_semitones"] in range(-3, 4) for name in md.INSTRUMENTS)
        folder = md.song_dir(tmp_path / "f", entry["split"], md.piece_name(key))
        audio = {s: sf.read(str(folder / f"{s}.wav"), dtype="int16")[0].astype(np.int32) for s in md.SOURCES}
        assert np.array_equal(audio["mix"], audio["piano"] + audio["violin"])
        assert max(np.max(np.abs(a)) for a in audio.values()) <= 0.9 * 32768
        assert np.max(np.abs(audio["piano"])) > 1000 and np.max(np.abs(audio["violin"])) > 1000


@needs_all
def test_a_build_made_before_formant_shifts_resumes_and_refuses_them_by_name(multi):
    """dataset.json of a build made before the option existed has no formant_semitones: it meant none."""
    path = multi / "b" / "dataset.json"
    data = json.loads(path.read_text())
    del data["render_options"]["effects"]["formant_semitones"]
    path.write_text(json.dumps(data))
    proc = build(multi / "b")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_one_line_error(build(multi / "b", "--formant_semitones", "2"), "effects.formant_semitones 0.0 -> 2.0")
