"""Piano accompaniments for single melody lines (datasets/accompaniment.py), checked on hand-worked cases."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_script
from datasets import accompaniment as acc
from datasets import midi_dataset as md

C, E, F, G, A, B, D = 60, 64, 65, 67, 69, 71, 62


def test_diatonic_chords_of_major_and_harmonic_minor():
    assert acc.chord_pitch_classes(0, "major", 0, 3) == [0, 4, 7]           # C major: I = C E G
    assert acc.chord_pitch_classes(0, "major", 4, 4) == [7, 11, 2, 5]       # V7 = G B D F
    assert acc.chord_pitch_classes(9, "minor", 4, 3) == [4, 8, 11]          # A minor: V = E G# B (raised 7th)
    assert acc.chord_pitch_classes(9, "minor", 0, 3) == [9, 0, 4]           # i = A C E


@pytest.mark.parametrize("melody, chord", [
    ([(0, 1, C), (1, 1, E), (2, 2, G)], [0, 4, 7]),            # arpeggiated tonic -> I
    ([(0, 2, F), (2, 2, A)], [5, 9, 0]),                       # F A -> IV
    ([(0, 1, G), (1, 1, B), (2, 2, D)], [7, 11, 2]),           # G B D -> V, not V7 (the triad on a tie)
    ([(0, 1, B), (1, 1, D), (2, 2, F)], [7, 11, 2, 5]),        # B D F -> only V7 holds all three
    ([], [0, 4, 7]),                                           # an empty measure -> the tonic
])
def test_each_measure_gets_the_chord_covering_most_of_its_melody(melody, chord):
    assert acc.harmonise(melody, 0, "major") == chord


def test_figurations_stay_in_the_measure_under_the_chord():
    for figuration in acc.FIGURATIONS:
        notes = acc.figuration_notes([0, 4, 7], 8.0, 4.0, 1.0, figuration, 48, 64)
        assert notes, figuration
        for offset, duration, pitch, velocity in notes:
            assert 8.0 <= offset and offset + duration <= 12.0 + 1e-9
            assert pitch % 12 in (0, 4, 7) and 36 <= pitch < 60 and 1 <= velocity <= 127
    alberti = [p for _, _, p, _ in acc.figuration_notes([0, 4, 7], 0.0, 2.0, 1.0, "alberti", 48, 64)]
    assert alberti == [48, 55, 52, 55]                        # low, high, middle, high in eighths
    oompah = acc.figuration_notes([0, 4, 7], 0.0, 4.0, 1.0, "oompah", 48, 64)
    assert [p for o, _, p, _ in oompah if o == 0.0] == [36]     # the bass alone on the first beat


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not Path(md.DEFAULT_SOUNDFONT).is_file(),
                    reason="needs: apt-get install fluidsynth fluid-soundfont-gm")
def test_a_fiddle_tune_becomes_a_duo_with_accompany(tmp_path):
    tune = "ryansMammoth/7thRegimentReel"
    skipped = run_script("datasets/build_midi_dataset.py", "--output", str(tmp_path / "a"), "--pieces", tune,
                         "--max_piece_minutes", "0.1", "--no_progress", "--jobs", "1")
    assert skipped.returncode == 0 and "a duo needs at least 2" in skipped.stderr
    proc = run_script("datasets/build_midi_dataset.py", "--output", str(tmp_path / "b"), "--pieces", tune,
                      "--max_piece_minutes", "0.1", "--accompany", "--no_progress", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    entry = json.loads((tmp_path / "b" / "dataset.json").read_text())["pieces"][md.piece_name(tune)]
    assert entry["accompaniment"]["figuration"] in acc.FIGURATIONS and entry["melody_part"][0] == 0
    import soundfile as sf

    folder = md.song_dir(tmp_path / "b", entry["split"], md.piece_name(tune))
    audio = {s: sf.read(str(folder / f"{s}.wav"), dtype="int16")[0].astype(np.int32) for s in md.SOURCES}
    assert np.array_equal(audio["mix"], audio["piano"] + audio["violin"])
    assert np.sqrt(np.mean(audio["piano"].astype(float) ** 2)) > 300       # the accompaniment sounds
