"""A piano accompaniment for a single melody line (fiddle tunes, folk songs): a duo from a one-part score.

The melody is harmonised measure by measure with the diatonic triads of its key (I, ii, IV, V, vi, and V7): the
chord whose tones cover the most of the measure's melody, weighted by duration, with ties going to the simpler
function (I, then V, then IV, ...). The chords are then played in one of several *figurations* (drawn per piece),
in a register drawn per piece below the melody:

* ``block``: the chord on every beat;
* ``oompah``: the bass on the strong beats, the chord on the others;
* ``alberti``: low-high-middle-high in eighth notes;
* ``arpeggio``: the chord tones rising in eighth notes, bass first;
* ``sustained``: the bass and the chord held for the whole measure.

This is what a keyboard player does from a lead sheet, simply; it gives the piano prior accompaniment textures that
the chorales' lower voices do not have (repeated chords, broken chords, a bass line of roots).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

FIGURATIONS = ("block", "oompah", "alberti", "arpeggio", "sustained")
#: scale degrees (0-based) of the chords tried, with their number of notes; earlier = preferred on ties
CHORDS = ((0, 3), (4, 3), (3, 3), (5, 3), (1, 3), (4, 4))


def chord_pitch_classes(tonic_pc: int, mode: str, degree: int, size: int) -> list[int]:
    """Pitch classes (root first) of the diatonic chord on ``degree`` of the key (``mode`` "major" or "minor";
    minor uses the harmonic minor's raised leading tone, so V is major)."""
    steps = [0, 2, 4, 5, 7, 9, 11] if mode == "major" else [0, 2, 3, 5, 7, 8, 11]
    return [(tonic_pc + steps[(degree + 2 * k) % 7]) % 12 for k in range(size)]


def harmonise(melody: Sequence[tuple[float, float, int]], tonic_pc: int, mode: str) -> list[int]:
    """Pitch classes of the best chord (root first) for one measure's melody.

    Args:
        melody: (offset, duration, midi pitch) of the measure's notes (quarter lengths).
    Returns:
        the chord's pitch classes; the tonic triad when the measure has no notes.
    """
    best, best_score = None, -1.0
    for degree, size in CHORDS:
        pcs = chord_pitch_classes(tonic_pc, mode, degree, size)
        score = sum(d for _, d, p in melody if p % 12 in pcs) - (0.01 if size == 4 else 0.0)
        if score > best_score + 1e-9:
            best, best_score = pcs, score
    return best


def _voiced(pcs: Sequence[int], low: int) -> list[int]:
    """The chord's pitch classes as MIDI notes rising from ``low`` (close position, root at the bottom)."""
    notes, current = [], low
    for pc in pcs:
        current += (pc - current) % 12
        notes.append(current)
    return notes


def figuration_notes(pcs: Sequence[int], start: float, length: float, beat: float, figuration: str,
                     register: int, velocity: int) -> list[tuple[float, float, int, int]]:
    """The accompaniment notes of one measure: (offset, duration, midi pitch, velocity), quarter lengths.

    Args:
        pcs: the chord's pitch classes, root first.
        start, length: the measure's offset and length.
        beat: the beat length (1.0 in 4/4, 1.5 in 6/8).
        register: MIDI note from which the chord is voiced upwards (the bass an octave lower).
    """
    bass = _voiced(pcs[:1], register - 12)[0]
    chord = _voiced(pcs, register)
    out = []
    beats = max(1, int(round(length / beat)))
    if figuration == "sustained":
        return [(start, length, p, velocity) for p in [bass, *chord]]
    if figuration in ("alberti", "arpeggio"):
        pattern = [chord[0], chord[-1], chord[1], chord[-1]] if figuration == "alberti" else [bass, *chord]
        step = beat / 2.0
        n = max(1, int(round(length / step)))
        return [(start + i * step, step, pattern[i % len(pattern)], velocity) for i in range(n)]
    for b in range(beats):
        offset = start + b * beat
        duration = min(beat, start + length - offset)
        if duration <= 0:
            break
        if figuration == "oompah" and b % 2 == 0:
            out.append((offset, duration, bass, velocity + 6))
        else:
            out.extend((offset, duration, p, velocity) for p in chord)
            if figuration == "block" and b == 0:
                out.append((offset, duration, bass, velocity))
    return out


def add_accompaniment(score, rng: np.random.Generator) -> dict:
    """Add a piano part that accompanies the score's single melody part; edits ``score`` in place.

    The key is music21's analysis of the melody (Krumhansl-Schmuckler); the meter's beat is the time signature's
    (1 quarter by default); the figuration and the register (C3, E3 or G3 for the chords, the bass an octave lower)
    are drawn from ``rng``; the accompaniment is kept below the melody's lowest note.

    Returns:
        {"figuration", "register", "key"}: what was drawn (for dataset.json).
    """
    from music21 import meter, note, stream

    melody_part = score.parts[0]
    key = melody_part.analyze("key")
    tonic_pc, mode = key.tonic.pitchClass, ("minor" if key.mode == "minor" else "major")
    figuration = FIGURATIONS[int(rng.integers(len(FIGURATIONS)))]
    lowest = min((n.pitches[0].midi for n in melody_part.flatten().notes if n.pitches), default=72)
    register = int(min([48, 52, 55][int(rng.integers(3))], lowest - 12))
    velocity = 64
    signature = melody_part.recurse().getElementsByClass(meter.TimeSignature).first()
    beat = float(signature.beatDuration.quarterLength) if signature is not None else 1.0
    measures = list(melody_part.getElementsByClass(stream.Measure))
    spans = [(float(m.offset), float(m.duration.quarterLength)) for m in measures] or \
        [(0.0, float(melody_part.highestTime))]
    notes = [(float(n.getOffsetInHierarchy(score)), float(n.duration.quarterLength), n.pitches[-1].midi)
             for n in melody_part.flatten().notes if n.pitches]
    piano = stream.Part()
    for number, (start, length) in enumerate(spans, start=1):      # measures as the melody's (MIDI writing needs them)
        measure = stream.Measure(number=number)
        if length > 0:
            inside = [(o, d, p) for o, d, p in notes if start <= o < start + length]
            pcs = harmonise(inside, tonic_pc, mode)
            for offset, duration, pitch, vel in figuration_notes(pcs, start, length, beat, figuration, register,
                                                                velocity):
                element = note.Note(pitch, quarterLength=duration)
                element.volume.velocity = int(vel)
                measure.insert(offset - start, element)
        piano.insert(start, measure)
    score.insert(0, piano)
    return {"figuration": figuration, "register": register, "key": f"{key.tonic.name} {mode}"}
